// Package kubelet is a minimal kubelet API server for the sandbox. It serves container logs kept in memory on
// loopback, so that the real kube-apiserver can proxy the pods/log subresource (kubectl logs) to simulated pods:
// point a Node's InternalIP at 127.0.0.1 and its status.daemonEndpoints.kubeletEndpoint.port at Server.Port.
package kubelet

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// LogLine is one line of a container's log, without its trailing newline.
type LogLine struct {
	Time time.Time // when the runtime wrote the line, in UTC
	Text string
}

// LogStore keeps container logs in memory, like kubelet's log files. It is safe for concurrent use.
type LogStore struct {
	mu   sync.Mutex
	pods map[podKey]map[string]*containerLog
}

type podKey struct{ namespace, pod string }

type containerLog struct {
	lines []LogLine
	// changed is closed and replaced on every append (and on removal), so that any number of followers wake
	// up without polling.
	changed chan struct{}
}

// NewLogStore returns an empty store.
func NewLogStore() *LogStore {
	return &LogStore{pods: map[podKey]map[string]*containerLog{}}
}

// AddContainer declares a container that has not logged yet, so that reading its logs returns nothing instead
// of 404. Appending declares the container too.
func (s *LogStore) AddContainer(namespace, pod, container string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.container(namespace, pod, container)
}

// Append adds a line to a container's log, timestamped now. A text with embedded newlines becomes several
// lines with the same time, as the container runtime would record it.
func (s *LogStore) Append(namespace, pod, container, line string) {
	s.AppendAt(namespace, pod, container, time.Now(), line)
}

// AppendAt is Append with an explicit time, for tests and replays. Times are kept in UTC, as the runtime
// writes them; lines are kept in append order whatever their times.
func (s *LogStore) AppendAt(namespace, pod, container string, t time.Time, line string) {
	texts := strings.Split(strings.TrimSuffix(line, "\n"), "\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.container(namespace, pod, container)
	for _, text := range texts {
		c.lines = append(c.lines, LogLine{Time: t.UTC(), Text: text})
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// Lines returns a copy of a container's log; nil when the container is unknown.
func (s *LogStore) Lines(namespace, pod, container string) []LogLine {
	lines, _, err := s.read(namespace, pod, container, 0)
	if err != nil {
		return nil
	}
	return lines
}

// RemovePod forgets a pod's logs, as kubelet does when the pod is deleted; streams following it end.
func (s *LogStore) RemovePod(namespace, pod string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := podKey{namespace, pod}
	for _, c := range s.pods[key] {
		close(c.changed)
	}
	delete(s.pods, key)
}

// container returns a container's log, creating it when missing. s.mu must be held.
func (s *LogStore) container(namespace, pod, container string) *containerLog {
	key := podKey{namespace, pod}
	if s.pods[key] == nil {
		s.pods[key] = map[string]*containerLog{}
	}
	c := s.pods[key][container]
	if c == nil {
		c = &containerLog{changed: make(chan struct{})}
		s.pods[key][container] = c
	}
	return c
}

// notFoundError says which of the pod or the container is unknown, in kubelet's words.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// read returns a copy of the lines from index from on, and a channel closed at the next change. The error is a
// *notFoundError when the pod or the container is unknown.
func (s *LogStore) read(namespace, pod, container string, from int) ([]LogLine, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	containers, ok := s.pods[podKey{namespace, pod}]
	if !ok {
		return nil, nil, &notFoundError{fmt.Sprintf("pod %q does not exist", pod)}
	}
	c, ok := containers[container]
	if !ok {
		return nil, nil, &notFoundError{fmt.Sprintf("container %q not found in pod %q", container, pod)}
	}
	// A pod removed and re-added while a follower slept restarts its log; never index past the end.
	from = min(from, len(c.lines))
	return append([]LogLine{}, c.lines[from:]...), c.changed, nil
}
