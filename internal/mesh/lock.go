package mesh

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LockName is the Lease, in the mesh root namespace, that lets one run at a time change the mesh.
const LockName = "labrun-mesh-lock"

// Holder identifies a run holding the lock: "<namespace>/<name>/<uid>".
type Holder string

// NewHolder is the holder identity of a run.
func NewHolder(namespace, name, uid string) Holder { return Holder(namespace + "/" + name + "/" + uid) }

// Parts splits the identity.
func (h Holder) Parts() (namespace, name, uid string) {
	parts := strings.SplitN(string(h), "/", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return parts[0], parts[1], parts[2]
}

// Lock is the mesh lock.
type Lock struct {
	Client    client.Client
	Namespace string
	// Duration is written into the Lease for observers (kubectl); liveness comes from Alive.
	Duration time.Duration
	// Alive tells whether a holder still needs the lock (its LabRun exists, same UID, not finished).
	Alive func(ctx context.Context, h Holder) (bool, error)
}

// Acquire takes the lock for h. It returns "" when h holds it, or the other holder when it must wait.
func (l Lock) Acquire(ctx context.Context, h Holder, now time.Time) (Holder, error) {
	lease := &coordinationv1.Lease{}
	err := l.Client.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: LockName}, lease)
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: l.Namespace, Name: LockName}}
		l.fill(lease, h, now)
		if err := l.Client.Create(ctx, lease); err != nil {
			return "", fmt.Errorf("taking the mesh lock: %w", err)
		}
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the mesh lock: %w", err)
	}
	current := Holder(ptrString(lease.Spec.HolderIdentity))
	if current == h {
		return "", nil
	}
	// The holder's LabRun decides, not the Lease's age: a long run keeps the lock for as long as it runs, and
	// a run that is gone, replaced or finished frees it.
	if current != "" {
		alive, err := l.Alive(ctx, current)
		if err != nil || alive {
			return current, err
		}
	}
	l.fill(lease, h, now) // the holder is gone: take over (the update fails on a race)
	if err := l.Client.Update(ctx, lease); err != nil {
		return current, fmt.Errorf("taking over the mesh lock from %s: %w", current, err)
	}
	return "", nil
}

// Release frees the lock if h holds it.
func (l Lock) Release(ctx context.Context, h Holder) error {
	lease := &coordinationv1.Lease{}
	err := l.Client.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: LockName}, lease)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if Holder(ptrString(lease.Spec.HolderIdentity)) != h {
		return nil
	}
	rv := lease.ResourceVersion
	err = l.Client.Delete(ctx, lease, client.Preconditions{ResourceVersion: &rv})
	return client.IgnoreNotFound(err)
}

func (l Lock) fill(lease *coordinationv1.Lease, h Holder, now time.Time) {
	id := string(h)
	secs := int32(l.Duration / time.Second)
	t := metav1.NewMicroTime(now)
	lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: &id, LeaseDurationSeconds: &secs, AcquireTime: &t, RenewTime: &t}
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
