package mesh

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

func TestRecordOverdue(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	by := metav1.NewTime(now)
	pending := entry(KindPeerAuthentication, `{}`)
	restored := entry(KindAuthorizationPolicy, `{}`)
	restored.Restored = true
	cases := []struct {
		name     string
		rec      Record
		at       time.Time
		overdue  bool
		wantLeft time.Duration
	}{
		{"no deadline yet", Record{Entries: nil}, now, false, 0},
		{"nothing pending", Record{RestoreBy: &by, Entries: []labsv1.JournalEntry{restored}}, now.Add(time.Hour), false, 0},
		{"within grace", Record{RestoreBy: &by, Entries: []labsv1.JournalEntry{pending}}, now.Add(10 * time.Second), false, 20 * time.Second},
		{"past grace", Record{RestoreBy: &by, Entries: []labsv1.JournalEntry{pending, restored}}, now.Add(31 * time.Second), true, -time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			overdue, left := tc.rec.Overdue(tc.at, 30*time.Second)
			if overdue != tc.overdue || left != tc.wantLeft {
				t.Errorf("Overdue = %v, %s; want %v, %s", overdue, left, tc.overdue, tc.wantLeft)
			}
		})
	}
}

func TestRecordPutReplacesTheSameObject(t *testing.T) {
	r := &Record{}
	first := entry(KindPeerAuthentication, `{"mtls":{"mode":"STRICT"}}`)
	first.Restored = true
	r.Put(first)
	r.Put(entry(KindAuthorizationPolicy, `{}`))
	r.Put(entry(KindPeerAuthentication, `{"mtls":{"mode":"PERMISSIVE"}}`))
	if len(r.Entries) != 2 {
		t.Fatalf("entries = %d, want 2", len(r.Entries))
	}
	if got := len(r.Pending()); got != 2 {
		t.Errorf("pending = %d, want 2 (the re-journaled PeerAuthentication is pending again)", got)
	}
	if OriginalMode(*r.Find(Ref{Kind: KindPeerAuthentication, Namespace: "ns", Name: "n"})) != "PERMISSIVE" {
		t.Error("Put must replace the entry of the same object")
	}
}

func TestRecordNames(t *testing.T) {
	if uid, ok := RecordUID(RecordName("1234")); !ok || uid != "1234" {
		t.Errorf("RecordUID(RecordName) = %q, %v", uid, ok)
	}
	for _, name := range []string{"labrun-record-", "other-1234", "kube-root-ca.crt"} {
		if _, ok := RecordUID(name); ok {
			t.Errorf("%q is not a record name", name)
		}
	}
}

// A record is believed only under its own name: a ConfigMap whose content names another run is refused.
func TestDecodeRecordRefusesAMismatchedName(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "labrun-system", Name: RecordName("a")},
		Data: map[string]string{recordKey: `{"run":{"namespace":"demo","name":"x","uid":"b"}}`}}
	if _, err := decodeRecord(cm); err == nil {
		t.Error("a record naming another run was accepted")
	}
	cm.Data[recordKey] = `{"run":{"namespace":"demo","name":"x","uid":"a"}}`
	if rec, err := decodeRecord(cm); err != nil || rec.Run.Name != "x" {
		t.Errorf("decodeRecord = %v, %v", rec, err)
	}
	cm.Data[recordKey] = `not json`
	if _, err := decodeRecord(cm); err == nil {
		t.Error("garbage was accepted as a record")
	}
}
