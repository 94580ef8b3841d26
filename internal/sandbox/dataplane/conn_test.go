package dataplane

import (
	"io"
	"net"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
)

func TestMeteredConnCountsAndReportsOnce(t *testing.T) {
	g := NewWithT(t)
	client, server := net.Pipe()
	var reports [][2]int64
	var mu sync.Mutex
	c := newMeteredConn(client, func(sent, recv int64) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, [2]int64{sent, recv})
	})
	go func() {
		buf := make([]byte, 5)
		_, _ = io.ReadFull(server, buf)
		_, _ = server.Write([]byte("response"))
		_ = server.Close()
	}()
	_, err := c.Write([]byte("hello"))
	g.Expect(err).NotTo(HaveOccurred())
	got, err := io.ReadAll(c)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(got)).To(Equal("response"))

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { _ = c.Close() })
	}
	wg.Wait()
	g.Expect(reports).To(Equal([][2]int64{{5, 8}}))
}
