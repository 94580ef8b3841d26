package mesh

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// countingReader counts the reads that reach the API server (here, the fake client).
type countingReader struct {
	client.Reader
	gets int
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets++
	return c.Reader.Get(ctx, key, obj, opts...)
}

// A pass reads its run's record from the API server once, then as it writes it; a change it does not save is not
// seen again, a failed write makes it read afresh, and outside a pass (and for other runs) every read is live.
func TestMemoReadsARunsRecordOncePerPass(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).Build()
	reads := &countingReader{Reader: c}
	s := Store{Client: c, Reader: reads, Namespace: "labrun-system", Memo: &Memo{}}
	other := Store{Client: c, Reader: c, Namespace: "labrun-system"} // another writer: the watchdog
	const uid = "run-1"
	if err := s.Save(ctx, &Record{Run: RunRef{Namespace: "demo", Name: "r", UID: uid}, TargetNamespace: "demo"}); err != nil {
		t.Fatal(err)
	}

	get := func(st Store) *Record {
		t.Helper()
		rec, err := st.Get(ctx, uid)
		if err != nil || rec == nil {
			t.Fatalf("Get: %v, %v", rec, err)
		}
		return rec
	}
	s.Memo.Begin(uid)
	for range 3 {
		get(s)
	}
	if reads.gets != 1 {
		t.Fatalf("three reads in a pass reached the API server %d times, want 1", reads.gets)
	}
	rec := get(s)
	rec.NonMeshNamespace = "changed, not saved"
	if again := get(s); again.NonMeshNamespace != "" {
		t.Fatalf("a change not saved was seen by the next Get: %q", again.NonMeshNamespace)
	}
	rec.NonMeshNamespace = "saved"
	if err := s.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if again := get(s); again.NonMeshNamespace != "saved" || reads.gets != 1 {
		t.Fatalf("after a Save the pass read %q with %d API reads, want what it saved and no new read", again.NonMeshNamespace, reads.gets)
	}

	// Another writer changes the record: the pass's next write fails on the version, and its next read is live.
	theirs := get(other)
	theirs.NonMeshNamespace = "the watchdog's"
	if err := other.Save(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	stale := get(s)
	stale.NonMeshNamespace = "stale"
	if err := s.Save(ctx, stale); err == nil {
		t.Fatal("a write over another writer's change succeeded")
	}
	if again := get(s); again.NonMeshNamespace != "the watchdog's" || reads.gets != 2 {
		t.Fatalf("after a failed write the pass read %q with %d API reads, want the other writer's, read live", again.NonMeshNamespace, reads.gets)
	}

	if err := s.Delete(ctx, get(s)); err != nil {
		t.Fatal(err)
	}
	if gone, err := s.Get(ctx, uid); err != nil || gone != nil || reads.gets != 2 {
		t.Fatalf("after a Delete the pass read %v, %v with %d API reads, want none and no new read", gone, err, reads.gets)
	}
	s.Memo.End(uid)
	for range 2 {
		if _, err := s.Get(ctx, uid); err != nil {
			t.Fatal(err)
		}
	}
	if reads.gets != 4 {
		t.Fatalf("outside a pass two reads reached the API server %d times in all, want 4", reads.gets)
	}
}
