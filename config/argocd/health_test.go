package argocd_test

// These tests run health.lua the way Argo CD runs a resource.customizations.health script: in gopher-lua with
// only the package, base and table libraries open, the live object as the global obj, and the returned table read
// as {status, message}. The objects are real labsv1.LabRun values sent through encoding/json, so the script is
// checked against the API's actual field names. They also keep argocd-cm-patch.yaml's embedded copy of the script
// and postsync-labrun.yaml's spec from drifting.

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

const (
	healthKey      = "resource.customizations.health.labs.ambientlab.io_LabRun"
	restoreFailMsg = "restoring PeerAuthentication istio-system/default: conflict: the object has been modified"
)

// validStatuses are the health codes Argo CD accepts from a Lua health script.
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return b
}

// toLua converts a JSON-decoded value (map[string]any, []any, string, float64, bool, nil) into a Lua value, as
// Argo CD does with the live object before it runs the script.
func toLua(l *lua.LState, v any) (lua.LValue, error) {
	switch v := v.(type) {
	case nil:
		return lua.LNil, nil
	case bool:
		return lua.LBool(v), nil
	case string:
		return lua.LString(v), nil
	case float64:
		return lua.LNumber(v), nil
	case []any:
		tbl := l.CreateTable(len(v), 0)
		for i, item := range v {
			lv, err := toLua(l, item)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			tbl.Append(lv)
		}
		return tbl, nil
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for k, item := range v {
			lv, err := toLua(l, item)
			if err != nil {
				return nil, fmt.Errorf(".%s: %w", k, err)
			}
			tbl.RawSetString(k, lv)
		}
		return tbl, nil
	default:
		return nil, fmt.Errorf("unsupported type %T", v)
	}
}

type health struct {
	Status  string
	Message string
}

// runHealth runs the script against obj in a state set up like Argo CD's: no string, math, io or os library.
func runHealth(t *testing.T, script string, obj map[string]any) health {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			t.Fatalf("opening %s: %v", lib.name, err)
		}
	}
	lobj, err := toLua(l, obj)
	if err != nil {
		t.Fatalf("converting the object: %v", err)
	}
	l.SetGlobal("obj", lobj)
	if err := l.DoString(script); err != nil {
		t.Fatalf("running health.lua: %v", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %s, want a table", l.Get(-1).Type())
	}
	status, ok := ret.RawGetString("status").(lua.LString)
	if !ok {
		t.Fatalf("hs.status is %s, want a string", ret.RawGetString("status").Type())
	}
	message, ok := ret.RawGetString("message").(lua.LString)
	if !ok {
		t.Fatalf("hs.message is %s, want a string", ret.RawGetString("message").Type())
	}
	if !validStatuses[string(status)] {
		t.Fatalf("hs.status %q is not an Argo CD health status", status)
	}
	return health{Status: string(status), Message: string(message)}
}

var when = metav1.NewTime(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))

func cond(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: 1,
		LastTransitionTime: when}
}

func meshRestored(status metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return cond(labsv1.ConditionMeshRestored, status, reason, msg)
}

// inProgress is a status as the controller writes it while the run goes on.
func inProgress(phase labsv1.Phase, msg string, extra ...metav1.Condition) labsv1.LabRunStatus {
	return labsv1.LabRunStatus{
		ObservedGeneration: 1, Phase: phase, Reason: string(phase), Message: msg,
		Conditions: append([]metav1.Condition{
			cond(labsv1.ConditionReady, metav1.ConditionFalse, string(phase), msg),
			cond(labsv1.ConditionReconciling, metav1.ConditionTrue, string(phase), msg),
		}, extra...),
	}
}

func succeeded(msg string, extra ...metav1.Condition) labsv1.LabRunStatus {
	return labsv1.LabRunStatus{
		ObservedGeneration: 1, Phase: labsv1.PhaseSucceeded, Reason: labsv1.ReasonSucceeded, Message: msg,
		Summary:    labsv1.Summary{Total: 12, Passed: 12},
		Conditions: append([]metav1.Condition{cond(labsv1.ConditionReady, metav1.ConditionTrue, labsv1.ReasonSucceeded, msg)}, extra...),
	}
}

func failed(reason, msg string, extra ...metav1.Condition) labsv1.LabRunStatus {
	return labsv1.LabRunStatus{
		ObservedGeneration: 1, Phase: labsv1.PhaseFailed, Reason: reason, Message: msg,
		Summary: labsv1.Summary{Total: 12, Passed: 10, Failed: 2},
		Conditions: append([]metav1.Condition{
			cond(labsv1.ConditionReady, metav1.ConditionFalse, reason, msg),
			cond(labsv1.ConditionStalled, metav1.ConditionTrue, reason, msg),
		}, extra...),
	}
}

// object marshals a LabRun with the sample's spec, the given generation and status into the map Argo CD holds.
func object(t *testing.T, generation int64, status labsv1.LabRunStatus) map[string]any {
	t.Helper()
	run := labsv1.LabRun{
		TypeMeta: metav1.TypeMeta{APIVersion: labsv1.GroupVersion.String(), Kind: "LabRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "ambient-security-labs", Namespace: "demo", Generation: generation,
			Finalizers: []string{labsv1.Finalizer}},
		Spec: labsv1.LabRunSpec{
			Labs:   labsv1.AllLabs,
			Target: labsv1.TargetSpec{Service: "backend", Port: 80, Path: "/get"},
			Mesh: labsv1.MeshSpec{RootNamespace: "istio-system", PeerAuthentication: "default",
				AuthorizationPolicy: &labsv1.ObjectRef{Namespace: "demo", Name: "backend-allow-frontend-only"}},
			MaxExposure: &metav1.Duration{Duration: 2 * time.Minute},
		},
		Status: status,
	}
	b, err := json.Marshal(run)
	if err != nil {
		t.Fatalf("marshalling the LabRun: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshalling the LabRun: %v", err)
	}
	return m
}

func withoutStatus(m map[string]any) map[string]any {
	delete(m, "status")
	return m
}

func TestHealth(t *testing.T) {
	script := string(readFile(t, "health.lua"))
	restored := meshRestored(metav1.ConditionTrue, labsv1.ReasonRestored,
		"Every changed object is back as found, PeerAuthentication STRICT")
	const holderMsg = "Waiting for the mesh lock held by LabRun demo/earlier-run"

	for _, tc := range []struct {
		name string
		obj  func(t *testing.T) map[string]any
		want health
	}{{
		name: "fresh object without status",
		obj:  func(t *testing.T) map[string]any { return withoutStatus(object(t, 1, labsv1.LabRunStatus{})) },
		want: health{"Progressing", "Waiting for the controller"},
	}, {
		name: "status only as Go zero value (no phase, no observedGeneration)",
		obj:  func(t *testing.T) map[string]any { return object(t, 1, labsv1.LabRunStatus{}) },
		want: health{"Progressing", "Waiting for the controller"},
	}, {
		name: "status as the CRD defaults it (observedGeneration -1)",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, labsv1.LabRunStatus{ObservedGeneration: -1})
		},
		want: health{"Progressing", "Waiting for the controller"},
	}, {
		name: "observedGeneration behind a finished run",
		obj: func(t *testing.T) map[string]any {
			return object(t, 2, succeeded("All 12 steps passed", restored))
		},
		want: health{"Progressing", "Waiting for the controller"},
	}, {
		name: "observedGeneration behind a failed run",
		obj: func(t *testing.T) map[string]any {
			return object(t, 3, failed(labsv1.ReasonStepsFailed, "10 of 12 steps passed (2 failed, 0 errored)", restored))
		},
		want: health{"Progressing", "Waiting for the controller"},
	}, {
		name: "Pending",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, inProgress(labsv1.PhasePending, "Planned 12 steps of 5 labs"))
		},
		want: health{"Progressing", "Planned 12 steps of 5 labs"},
	}, {
		name: "Running",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, inProgress(labsv1.PhaseRunning, "Holding the mesh lock; running steps"))
		},
		want: health{"Progressing", "Holding the mesh lock; running steps"},
	}, {
		name: "Running without a message",
		obj:  func(t *testing.T) map[string]any { return object(t, 1, inProgress(labsv1.PhaseRunning, "")) },
		want: health{"Progressing", "Running"},
	}, {
		name: "Queued with holder, controller's message already names it",
		obj: func(t *testing.T) map[string]any {
			s := inProgress(labsv1.PhaseQueued, holderMsg)
			s.LockHolder = "demo/earlier-run"
			return object(t, 1, s)
		},
		want: health{"Progressing", holderMsg},
	}, {
		name: "Queued with holder, message without it",
		obj: func(t *testing.T) map[string]any {
			s := inProgress(labsv1.PhaseQueued, "Preflight passed")
			s.LockHolder = "demo/earlier-run"
			return object(t, 1, s)
		},
		want: health{"Progressing", "Preflight passed (waiting for the mesh lock held by LabRun demo/earlier-run)"},
	}, {
		name: "Queued without holder",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, inProgress(labsv1.PhaseQueued, "Preflight passed"))
		},
		want: health{"Progressing", "Preflight passed"},
	}, {
		name: "Restoring while a restore attempt failed",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, inProgress(labsv1.PhaseRestoring, "Restoring the mesh",
				meshRestored(metav1.ConditionFalse, labsv1.ReasonRestoreFailed, restoreFailMsg)))
		},
		want: health{"Progressing", "Restoring the mesh"},
	}, {
		name: "Succeeded and mesh restored",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, succeeded("All 12 steps passed", restored))
		},
		want: health{"Healthy", "All 12 steps passed"},
	}, {
		name: "Succeeded dry run",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, succeeded("Dry run: 12 steps planned, nothing changed",
				meshRestored(metav1.ConditionTrue, labsv1.ReasonDryRun, "Dry run: nothing in the mesh was changed")))
		},
		want: health{"Healthy", "Dry run: 12 steps planned, nothing changed"},
	}, {
		name: "Succeeded without MeshRestored",
		obj:  func(t *testing.T) map[string]any { return object(t, 1, succeeded("All 12 steps passed")) },
		want: health{"Degraded", "All 12 steps passed; mesh NOT restored: no MeshRestored condition"},
	}, {
		name: "Succeeded with MeshRestored False",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, succeeded("All 12 steps passed",
				meshRestored(metav1.ConditionFalse, labsv1.ReasonRestoreFailed, restoreFailMsg)))
		},
		want: health{"Degraded", "All 12 steps passed; mesh NOT restored: RestoreFailed (" + restoreFailMsg + ")"},
	}, {
		name: "Failed with mesh restored",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, failed(labsv1.ReasonStepsFailed, "10 of 12 steps passed (2 failed, 0 errored)", restored))
		},
		want: health{"Degraded", "10 of 12 steps passed (2 failed, 0 errored)"},
	}, {
		name: "Failed preflight, mesh unchanged",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, failed(labsv1.ReasonPreflightFailed, "namespace demo is not in the ambient mesh",
				meshRestored(metav1.ConditionTrue, labsv1.ReasonUnchanged, "The run changed nothing in the mesh")))
		},
		want: health{"Degraded", "namespace demo is not in the ambient mesh"},
	}, {
		name: "Failed with MeshRestored False RestoreFailed",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, failed(labsv1.ReasonExposureExceeded, "maxExposure 2m0s ran out",
				meshRestored(metav1.ConditionFalse, labsv1.ReasonRestoreFailed, restoreFailMsg)))
		},
		want: health{"Degraded", "maxExposure 2m0s ran out; mesh NOT restored: RestoreFailed (" + restoreFailMsg + ")"},
	}, {
		name: "Failed without MeshRestored",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, failed(labsv1.ReasonStepsFailed, "10 of 12 steps passed (2 failed, 0 errored)"))
		},
		want: health{"Degraded", "10 of 12 steps passed (2 failed, 0 errored); mesh NOT restored: no MeshRestored condition"},
	}, {
		name: "Failed without a message",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, failed(labsv1.ReasonPreflightFailed, "",
				meshRestored(metav1.ConditionTrue, labsv1.ReasonUnchanged, "")))
		},
		want: health{"Degraded", "LabRun failed: PreflightFailed"},
	}, {
		name: "unrecognized phase",
		obj: func(t *testing.T) map[string]any {
			return object(t, 1, inProgress(labsv1.Phase("Exploded"), "something new"))
		},
		want: health{"Unknown", "Unrecognized phase Exploded; something new"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := runHealth(t, script, tc.obj(t))
			if got != tc.want {
				t.Errorf("health = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestObjectsUseAPIFieldNames guards the test itself: the objects carry the fields health.lua reads, under the
// names the API serializes them with.
func TestObjectsUseAPIFieldNames(t *testing.T) {
	s := inProgress(labsv1.PhaseQueued, "Preflight passed", meshRestored(metav1.ConditionTrue, "Restored", "ok"))
	s.LockHolder = "demo/earlier-run"
	m := object(t, 4, s)
	md, _ := m["metadata"].(map[string]any)
	st, _ := m["status"].(map[string]any)
	if md["generation"] != float64(4) {
		t.Errorf("metadata.generation = %v", md["generation"])
	}
	for key, want := range map[string]any{"phase": "Queued", "message": "Preflight passed",
		"observedGeneration": float64(1), "lockHolder": "demo/earlier-run"} {
		if st[key] != want {
			t.Errorf("status.%s = %v, want %v", key, st[key], want)
		}
	}
	conds, _ := st["conditions"].([]any)
	var types []string
	for _, c := range conds {
		c, _ := c.(map[string]any)
		types = append(types, fmt.Sprint(c["type"], "=", c["status"], "/", c["reason"]))
	}
	sort.Strings(types)
	if got, want := strings.Join(types, ","), "MeshRestored=True/Restored,Ready=False/Queued,Reconciling=True/Queued"; got != want {
		t.Errorf("conditions = %s, want %s", got, want)
	}
}

func TestToLuaRejectsUnsupportedTypes(t *testing.T) {
	l := lua.NewState()
	defer l.Close()
	if _, err := toLua(l, map[string]any{"a": []any{int64(1)}}); err == nil || !strings.Contains(err.Error(), ".a: [0]: unsupported type int64") {
		t.Errorf("toLua(int64) error = %v", err)
	}
}

// TestConfigMapPatchEmbedsHealthLua keeps argocd-cm-patch.yaml's script byte for byte equal to health.lua.
func TestConfigMapPatchEmbedsHealthLua(t *testing.T) {
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(readFile(t, "argocd-cm-patch.yaml"), &cm); err != nil {
		t.Fatalf("parsing argocd-cm-patch.yaml: %v", err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Name != "argocd-cm" || cm.Namespace != "argocd" {
		t.Errorf("patch targets %s %s %s/%s, want v1 ConfigMap argocd/argocd-cm", cm.APIVersion, cm.Kind,
			cm.Namespace, cm.Name)
	}
	if len(cm.Data) != 2 {
		t.Errorf("data has %d keys, want only %s and %s", len(cm.Data), healthKey, scheduleHealthKey)
	}
	embedded, ok := cm.Data[healthKey]
	if !ok {
		t.Fatalf("data has no %s", healthKey)
	}
	want := string(readFile(t, "health.lua"))
	if embedded != want {
		el, wl := strings.Split(embedded, "\n"), strings.Split(want, "\n")
		for i := 0; i < len(el) || i < len(wl); i++ {
			var e, w string
			if i < len(el) {
				e = el[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if e != w {
				t.Fatalf("the script in argocd-cm-patch.yaml differs from health.lua at line %d:\n yaml: %q\n file: %q\n"+
					"(%d vs %d bytes); regenerate it by indenting health.lua by 4 spaces", i+1, e, w, len(embedded), len(want))
			}
		}
		t.Fatalf("the script in argocd-cm-patch.yaml differs from health.lua (%d vs %d bytes)", len(embedded), len(want))
	}
}

// TestPostSyncExample checks the hook example: a LabRun with the PostSync annotations and the sample's spec.
func TestPostSyncExample(t *testing.T) {
	var hook, sample labsv1.LabRun
	if err := yaml.UnmarshalStrict(readFile(t, "postsync-labrun.yaml"), &hook); err != nil {
		t.Fatalf("parsing postsync-labrun.yaml: %v", err)
	}
	if err := yaml.UnmarshalStrict(readFile(t, "../samples/labs_v1alpha1_labrun.yaml"), &sample); err != nil {
		t.Fatalf("parsing the sample: %v", err)
	}
	if hook.APIVersion != labsv1.GroupVersion.String() || hook.Kind != "LabRun" {
		t.Errorf("example is %s %s, want %s LabRun", hook.APIVersion, hook.Kind, labsv1.GroupVersion)
	}
	for k, want := range map[string]string{
		"argocd.argoproj.io/hook":               "PostSync",
		"argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
	} {
		if got := hook.Annotations[k]; got != want {
			t.Errorf("annotation %s = %q, want %q", k, got, want)
		}
	}
	if hook.Name != sample.Name || hook.Namespace != sample.Namespace {
		t.Errorf("example is %s/%s, sample is %s/%s", hook.Namespace, hook.Name, sample.Namespace, sample.Name)
	}
	if !equality.Semantic.DeepEqual(hook.Spec, sample.Spec) {
		t.Errorf("example spec differs from the sample's:\n example: %+v\n sample:  %+v", hook.Spec, sample.Spec)
	}
	// A run that has just been created by the hook must keep Argo CD waiting.
	b, err := json.Marshal(hook)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["metadata"].(map[string]any)["generation"] = float64(1)
	delete(m, "status")
	if got := runHealth(t, string(readFile(t, "health.lua")), m); got.Status != "Progressing" {
		t.Errorf("a just-created hook LabRun is %+v, want Progressing", got)
	}
}
