package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The mesh locks are tickets: one Lease per run that wants to change the mesh, in the operator's own namespace
// (where only the manager may create, change or delete a Lease). A ticket names what the run's changes reach
// (its keys) and when it asked; a ticket is served when no earlier ticket with an overlapping key is still alive
// and no overlapping ticket is already served. Runs that change disjoint parts of the mesh proceed at once;
// runs that overlap are served first come, first served.
const (
	// LabelLockTicket marks the ticket Leases (the cache and the watch select them by it).
	LabelLockTicket = "labs.ambientlab.io/lock-ticket"
	// annotationLockKeys holds a ticket's keys (JSON), annotationLockRequested when it was asked for.
	annotationLockKeys      = "labs.ambientlab.io/lock-keys"
	annotationLockRequested = "labs.ambientlab.io/lock-requested"
	ticketPrefix            = "labrun-lock-"
)

// Lock levels, from the narrowest: what a change reaches.
const (
	LockWorkload  = "Workload"
	LockNamespace = "Namespace"
	LockMesh      = "Mesh"
)

// LockKey is what one change reaches: the pods a label selector picks in a namespace (Workload), a namespace,
// or the whole mesh.
type LockKey struct {
	Level     string            `json:"level"`
	Namespace string            `json:"namespace,omitempty"`
	Selector  map[string]string `json:"selector,omitempty"`
}

func (k LockKey) String() string {
	switch k.Level {
	case LockMesh:
		return "the mesh"
	case LockNamespace:
		return "namespace " + k.Namespace
	}
	parts := make([]string, 0, len(k.Selector))
	for _, l := range sortedKeys(k.Selector) {
		parts = append(parts, l+"="+k.Selector[l])
	}
	return fmt.Sprintf("workload %s/{%s}", k.Namespace, strings.Join(parts, ","))
}

// Overlaps tells whether two keys may reach a common pod. Two workload selectors in one namespace overlap unless
// they require different values of one label: a pod can then match only one of them, whatever pods exist.
func (k LockKey) Overlaps(o LockKey) bool {
	if k.Level == LockMesh || o.Level == LockMesh {
		return true
	}
	if k.Namespace != o.Namespace {
		return false
	}
	if k.Level == LockNamespace || o.Level == LockNamespace {
		return true
	}
	for l, v := range k.Selector {
		if w, ok := o.Selector[l]; ok && w != v {
			return false
		}
	}
	return true
}

func overlap(a, b []LockKey) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Overlaps(y) {
				return true
			}
		}
	}
	return false
}

// Holder identifies a run: "<namespace>/<name>/<uid>".
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

// Run is "<namespace>/<name>".
func (h Holder) Run() string {
	ns, name, _ := h.Parts()
	return ns + "/" + name
}

// Place is where a ticket stands.
type Place struct {
	// Served: the run holds its lock and may change what its keys reach.
	Served bool
	// Ahead counts the live tickets that overlap and are served or asked earlier; Blocker is the first of them.
	Ahead   int
	Blocker Holder
	// Keys are the ticket's keys, as it asked.
	Keys []LockKey
}

// Lock is the queue of tickets.
type Lock struct {
	// Client reads tickets from the cache and writes them; Reader reads them from the API server, to confirm
	// before a ticket is served.
	Client    client.Client
	Reader    client.Reader
	Namespace string
	// Alive tells whether a ticket's run still needs it: its LabRun exists (same UID) and has not finished, or
	// what it changed is not restored yet.
	Alive func(ctx context.Context, h Holder) (bool, error)
	// Serve serialises the decisions to serve a ticket in this process (only the leader runs LabRuns).
	Serve *sync.Mutex
}

// TicketName is the Lease of a run's ticket.
func TicketName(uid string) string { return ticketPrefix + uid }

type ticket struct {
	lease     *coordinationv1.Lease
	holder    Holder
	keys      []LockKey
	requested time.Time
	served    bool
}

func ticketOf(l *coordinationv1.Lease) (ticket, error) {
	t := ticket{lease: l, holder: Holder(ptrString(l.Spec.HolderIdentity)), served: l.Spec.AcquireTime != nil}
	if err := json.Unmarshal([]byte(l.Annotations[annotationLockKeys]), &t.keys); err != nil {
		return t, fmt.Errorf("ticket %s: keys: %w", l.Name, err)
	}
	at, err := time.Parse(time.RFC3339Nano, l.Annotations[annotationLockRequested])
	if err != nil {
		return t, fmt.Errorf("ticket %s: requested: %w", l.Name, err)
	}
	t.requested = at
	return t, nil
}

// before orders tickets by when they were asked for, then by name: one total order every reader agrees on.
func (t ticket) before(o ticket) bool {
	if !t.requested.Equal(o.requested) {
		return t.requested.Before(o.requested)
	}
	return t.lease.Name < o.lease.Name
}

// Request asks for the lock on what keys says for h (a ticket is created on the first call, and keys is worked
// out only then; later calls keep its place and its keys) and says where it stands. A ticket is served once
// nothing overlapping stands before it.
func (l Lock) Request(ctx context.Context, h Holder, keys func() ([]LockKey, error), now time.Time) (Place, error) {
	_, _, uid := h.Parts()
	name := TicketName(uid)
	// The run's own ticket is read from the API server: a cached copy of the ticket it gave back at the end of
	// its last window must never pass for the lock.
	own, err := l.own(ctx, l.Reader, name)
	if err != nil {
		return Place{}, err
	}
	if own == nil {
		ks, err := keys()
		if err != nil {
			return Place{}, err
		}
		if own, err = l.create(ctx, h, name, ks, now); err != nil {
			return Place{}, err
		}
	}
	if own.served {
		return Place{Served: true, Keys: own.keys}, nil
	}
	place, err := l.place(ctx, l.Client, own)
	if err != nil || place.Ahead > 0 {
		return place, err
	}
	// The cache may not have every ticket yet: the decision to serve is taken again on the API server's view,
	// one at a time.
	l.Serve.Lock()
	defer l.Serve.Unlock()
	if own, err = l.own(ctx, l.Reader, name); err != nil || own == nil {
		if err == nil {
			err = fmt.Errorf("ticket %s vanished", name)
		}
		return Place{}, err
	}
	if own.served {
		return Place{Served: true, Keys: own.keys}, nil
	}
	if place, err = l.place(ctx, l.Reader, own); err != nil || place.Ahead > 0 {
		return place, err
	}
	at := metav1.NewMicroTime(now)
	own.lease.Spec.AcquireTime, own.lease.Spec.RenewTime = &at, &at
	if err := l.Client.Update(ctx, own.lease); err != nil {
		return Place{}, fmt.Errorf("serving ticket %s: %w", name, err)
	}
	return Place{Served: true, Keys: own.keys}, nil
}

// Served tells whether h holds a served ticket (read from the API server).
func (l Lock) Served(ctx context.Context, h Holder) (bool, error) {
	_, _, uid := h.Parts()
	own, err := l.own(ctx, l.Reader, TicketName(uid))
	return own != nil && own.served, err
}

func (l Lock) own(ctx context.Context, r client.Reader, name string) (*ticket, error) {
	lease := &coordinationv1.Lease{}
	err := r.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: name}, lease)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ticket %s: %w", name, err)
	}
	t, err := ticketOf(lease)
	return &t, err
}

func (l Lock) create(ctx context.Context, h Holder, name string, keys []LockKey, now time.Time) (*ticket, error) {
	raw, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	id := string(h)
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: l.Namespace, Name: name,
			Labels: map[string]string{LabelLockTicket: "true"},
			Annotations: map[string]string{annotationLockKeys: string(raw),
				annotationLockRequested: now.UTC().Format(time.RFC3339Nano)}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &id},
	}
	// Tickets are numbered by the clock of the one process that serves them; creating them one at a time keeps
	// that order the order of arrival.
	l.Serve.Lock()
	err = l.Client.Create(ctx, lease)
	l.Serve.Unlock()
	if apierrors.IsAlreadyExists(err) {
		return l.own(ctx, l.Reader, name)
	}
	if err != nil {
		return nil, fmt.Errorf("asking for the mesh lock: %w", err)
	}
	t, err := ticketOf(lease)
	return &t, err
}

// place counts the live tickets that stand before own: served ones that overlap, and earlier overlapping ones.
// A ticket whose run no longer needs it is deleted on the way.
func (l Lock) place(ctx context.Context, r client.Reader, own *ticket) (Place, error) {
	list := &coordinationv1.LeaseList{}
	if err := r.List(ctx, list, client.InNamespace(l.Namespace), client.MatchingLabels{LabelLockTicket: "true"}); err != nil {
		return Place{}, fmt.Errorf("listing mesh lock tickets: %w", err)
	}
	var ahead []ticket
	for i := range list.Items {
		t, err := ticketOf(&list.Items[i])
		if err != nil || t.lease.Name == own.lease.Name || !overlap(t.keys, own.keys) {
			continue // a ticket the manager did not write is no one's (only it may write Leases here)
		}
		if !t.served && !t.before(*own) {
			continue
		}
		alive, err := l.Alive(ctx, t.holder)
		if err != nil {
			return Place{}, err
		}
		if !alive {
			if err := l.drop(ctx, t.lease); err != nil {
				return Place{}, err
			}
			continue
		}
		ahead = append(ahead, t)
	}
	sort.Slice(ahead, func(i, j int) bool {
		if ahead[i].served != ahead[j].served {
			return ahead[i].served
		}
		return ahead[i].before(ahead[j])
	})
	p := Place{Ahead: len(ahead), Keys: own.keys}
	if len(ahead) > 0 {
		p.Blocker = ahead[0].holder
	}
	return p, nil
}

func (l Lock) drop(ctx context.Context, lease *coordinationv1.Lease) error {
	rv := lease.ResourceVersion
	err := l.Client.Delete(ctx, lease, client.Preconditions{ResourceVersion: &rv})
	if apierrors.IsConflict(err) {
		return nil // changed meanwhile: judged again on the next look
	}
	return client.IgnoreNotFound(err)
}

// Release gives h's ticket back, served or not.
func (l Lock) Release(ctx context.Context, h Holder) error {
	_, _, uid := h.Parts()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: l.Namespace, Name: TicketName(uid)}}
	return client.IgnoreNotFound(l.Client.Delete(ctx, lease))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range maps.Keys(m) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
