package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// latencyHist is a log-linear histogram of durations: exact below 128 ns,
// then 64 buckets per power of two (a relative error under 1.6 %). Its
// size is fixed (about 30 KB) whatever the number of values, and Record
// is safe for concurrent use without locks.
type latencyHist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Int64 // nanoseconds
	max    atomic.Int64 // nanoseconds
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	// histBuckets covers every non-negative int64.
	histBuckets = (64 - histSubBits) * histSub
)

// histIndex is the bucket of v nanoseconds.
func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - (histSubBits + 1)
	return e*histSub + int(v>>e)
}

// histMid is the middle of bucket i.
func histMid(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	m := uint64(i - e*histSub)
	lo := m << e
	return lo + (uint64(1)<<e)/2
}

// Record adds one duration; negative ones count as 0.
func (h *latencyHist) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[histIndex(uint64(v))].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count is the number of values recorded.
func (h *latencyHist) Count() uint64 { return h.n.Load() }

// Quantile returns the value at quantile q (0 < q ≤ 1), 0 when empty.
func (h *latencyHist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	target := uint64(math.Ceil(q * float64(n)))
	target = min(max(target, 1), n)
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= target {
			return min(time.Duration(histMid(i)), time.Duration(h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// latencySummary is a histogram's figures in milliseconds.
type latencySummary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func (h *latencyHist) Summary() latencySummary {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	s := latencySummary{Count: h.Count(), P50: ms(h.Quantile(0.50)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(time.Duration(h.max.Load()))}
	if s.Count > 0 {
		s.Mean = ms(time.Duration(h.sum.Load() / int64(s.Count)))
	}
	return s
}
