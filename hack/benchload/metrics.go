package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// sample is one line of a Prometheus text exposition.
type sample struct {
	labels map[string]string
	value  float64
}

// count is a named number of requests.
type count struct {
	name string
	n    float64
}

// parseSamples reads the samples of one metric from a text exposition (label values without escaped quotes, as
// the counters read here have).
func parseSamples(text, metric string) []sample {
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, metric+"{")
		if !ok {
			continue
		}
		labelText, valueText, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(valueText)[0], 64)
		if err != nil {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(labelText, "\",") {
			k, val, _ := strings.Cut(kv, "=\"")
			labels[strings.TrimSpace(k)] = strings.TrimSuffix(val, "\"")
		}
		out = append(out, sample{labels: labels, value: v})
	}
	return out
}

// serverCounts are the API server's requests so far by verb, resource and subresource.
func (b *bench) serverCounts(ctx context.Context) (map[string]float64, error) {
	raw, err := b.scrape(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range parseSamples(raw, "apiserver_request_total") {
		res := s.labels["resource"]
		if sub := s.labels["subresource"]; sub != "" {
			res += "/" + sub
		}
		out[s.labels["verb"]+" "+res] += s.value
	}
	return out, nil
}

// scrape reads the API server's metrics.
func (b *bench) scrape(ctx context.Context) (string, error) {
	cs, err := kubernetes.NewForConfig(b.sb.Env.Config)
	if err != nil {
		return "", err
	}
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("scraping the API server's metrics: %w", err)
	}
	return string(raw), nil
}

// serverFigures are the API server's requests between two scrapes: by verb, the busiest verb and resource pairs,
// and the pod log reads (the manager is the one client that reads pods/log).
func serverFigures(before, after map[string]float64) (byVerb, top []count, logReads int64) {
	verbs := map[string]float64{}
	for _, c := range diff(before, after) {
		verb, res, _ := strings.Cut(c.name, " ")
		verbs[verb] += c.n
		if res == "pods/log" {
			logReads += int64(c.n)
		}
	}
	all := diff(before, after)
	return sorted(verbs), all[:min(len(all), 12)], logReads
}

// diff is after minus before, busiest first, zeros left out.
func diff(before, after map[string]float64) []count {
	d := map[string]float64{}
	for k, v := range after {
		if v-before[k] > 0 {
			d[k] = v - before[k]
		}
	}
	return sorted(d)
}

func sorted(m map[string]float64) []count {
	out := make([]count, 0, len(m))
	for k, v := range m {
		out = append(out, count{name: k, n: v})
	}
	slices.SortFunc(out, func(a, b count) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.name, b.name)) })
	return out
}

func total(cs []count) float64 {
	var t float64
	for _, c := range cs {
		t += c.n
	}
	return t
}
