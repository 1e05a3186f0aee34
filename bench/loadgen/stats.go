package main

import (
	"slices"
	"sort"
)

// quantile is Python's statistics.quantiles(data, n=n)[i-1] (its default, "exclusive"
// method) on sorted data, so both load generators compute p50 and p99 alike.
func quantile(data []int64, i, n int) float64 {
	ld := len(data)
	switch ld {
	case 0:
		return 0
	case 1:
		return float64(data[0])
	}
	m := ld + 1
	j := i * m / n
	j = max(1, min(j, ld-1))
	delta := i*m - j*n
	return (float64(data[j-1])*float64(n-delta) + float64(data[j])*float64(delta)) / float64(n)
}

// bucketsMs are the histogram's upper bounds; the last bucket takes everything above.
var bucketsMs = []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}

const slowest = 20

// summarize computes the latency figures from every sample of every subscriber.
func summarize(res *Result, subs []*subscriber) {
	total := 0
	for _, s := range subs {
		total += len(s.lat)
	}
	res.Samples = total
	res.Histogram = []Bucket{}
	res.Slowest = []Slow{}
	if total == 0 {
		return
	}
	all := make([]int64, 0, total)
	first := int64(-1)
	for _, s := range subs {
		all = append(all, s.lat...)
		if len(s.sent) > 0 && (first < 0 || s.sent[0] < first) {
			first = s.sent[0]
		}
	}
	slices.Sort(all)
	ms := func(ns float64) float64 { return ns / 1e6 }
	top := float64(all[len(all)-1])
	// With few samples Python's method extrapolates past the largest: a percentile is at most
	// the maximum.
	q := func(i, n int) float64 { return ms(min(quantile(all, i, n), top)) }
	res.P50, res.P90, res.P99, res.P999 = q(50, 100), q(90, 100), q(99, 100), q(999, 1000)
	res.Max = ms(top)

	at := 0
	for _, bound := range bucketsMs {
		end := sort.Search(len(all), func(k int) bool { return float64(all[k]) > bound*1e6 })
		res.Histogram = append(res.Histogram, Bucket{UpToMs: bound, Count: end - at})
		at = end
	}
	res.Histogram = append(res.Histogram, Bucket{UpToMs: 0, Count: len(all) - at})

	// The slowest deliveries of distinct messages, with their send times.
	type sample struct{ sent, lat int64 }
	worst := make([]sample, 0, slowest*len(subs))
	for _, s := range subs {
		idx := make([]int, len(s.lat))
		for k := range idx {
			idx[k] = k
		}
		sort.Slice(idx, func(a, b int) bool { return s.lat[idx[a]] > s.lat[idx[b]] })
		for _, k := range idx[:min(slowest, len(idx))] {
			worst = append(worst, sample{s.sent[k], s.lat[k]})
		}
	}
	sort.Slice(worst, func(a, b int) bool { return worst[a].lat > worst[b].lat })
	seen := map[int64]bool{}
	for _, w := range worst {
		if seen[w.sent] {
			continue
		}
		seen[w.sent] = true
		res.Slowest = append(res.Slowest, Slow{SentMs: ms(float64(w.sent - first)), LatencyMs: ms(float64(w.lat))})
		if len(res.Slowest) == slowest {
			break
		}
	}
}
