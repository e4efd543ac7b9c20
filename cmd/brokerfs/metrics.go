package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	mongoevent "go.mongodb.org/mongo-driver/v2/event"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/table"
)

// metrics is what --metrics serves, in Prometheus text (client_golang: the exposition format
// and its registry are its job, not ours). No label holds a path, URI or credential: labels
// are operation names and errno names only.
type metrics struct {
	reg        *prometheus.Registry
	ops        *prometheus.CounterVec
	opSeconds  *prometheus.HistogramVec
	roundTrips *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brokerfs_fuse_operations_total", Help: "FUSE operations served, by operation and result.",
		}, []string{"op", "result"}),
		opSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "brokerfs_fuse_operation_seconds", Help: "Time to serve a FUSE operation.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
		}, []string{"op"}),
		roundTrips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brokerfs_catalog_round_trips_total", Help: "Commands sent to the catalog's database, by command.",
		}, []string{"command"}),
	}
	m.reg.MustRegister(m.ops, m.opSeconds, m.roundTrips,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe is nodes.Config.Observe.
func (m *metrics) observe(op string, took time.Duration, errno syscall.Errno) {
	result := "ok"
	if errno != 0 {
		result = errnoName(errno)
	}
	m.ops.WithLabelValues(op, result).Inc()
	m.opSeconds.WithLabelValues(op).Observe(took.Seconds())
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.EIO:
		return "EIO"
	case syscall.EROFS:
		return "EROFS"
	case syscall.EINTR:
		return "EINTR"
	}
	return "other"
}

// mongoMonitor counts MongoDB commands: round trips to the catalog.
func (m *metrics) mongoMonitor() *mongoevent.CommandMonitor {
	return &mongoevent.CommandMonitor{Started: func(_ context.Context, e *mongoevent.CommandStartedEvent) {
		m.roundTrips.WithLabelValues(commandName(e.CommandName)).Inc()
	}}
}

// commandName keeps label values to a known set.
func commandName(c string) string {
	switch c {
	case "find", "getMore", "count", "aggregate", "listCollections", "killCursors", "endSessions", "ping", "hello", "isMaster":
		return c
	}
	return "other"
}

// serve registers the cache and table counters and serves /metrics on addr until stop.
func (m *metrics) serve(addr string, store *cache.Store, ts *table.Stats, log *slog.Logger) (stop func(), err error) {
	stat := func(f func(cache.Stats) int64) func() float64 {
		return func() float64 {
			if store == nil {
				return 0
			}
			return float64(f(store.Stats()))
		}
	}
	count := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		count("brokerfs_cache_hits_total", "Cache lookups that found a valid entry.", stat(func(s cache.Stats) int64 { return s.Hits })),
		count("brokerfs_cache_misses_total", "Cache lookups that found none (or a damaged one).", stat(func(s cache.Stats) int64 { return s.Misses })),
		count("brokerfs_cache_evictions_total", "Entries evicted to stay under --cache-max.", stat(func(s cache.Stats) int64 { return s.Evictions })),
		count("brokerfs_cache_written_bytes_total", "Bytes written into the cache.", stat(func(s cache.Stats) int64 { return s.BytesWritten })),
		gauge("brokerfs_cache_bytes", "Bytes the cache holds on disk.", stat(func(s cache.Stats) int64 { return s.Bytes })),
		gauge("brokerfs_cache_entries", "Entries in the cache.", stat(func(s cache.Stats) int64 { return s.Entries })),
		gauge("brokerfs_cache_max_bytes", "The cache's cap (--cache-max).", stat(func(s cache.Stats) int64 { return s.MaxBytes })),
		count("brokerfs_stream_scans_total", "Passes over a stream's events (decodes).", func() float64 { return float64(ts.Scans.Load()) }),
		count("brokerfs_stream_cache_hits_total", "Streams served from the cache without decoding.", func() float64 { return float64(ts.CacheHits.Load()) }),
		count("brokerfs_stream_cache_failures_total", "Streams that could not be stored and were served without the cache.", func() float64 { return float64(ts.CacheFailed.Load()) }),
		count("brokerfs_handler_reads_total", "Rows of external or remote fields read through handlers.", func() float64 { return float64(ts.FramesFilled.Load()) }),
		count("brokerfs_fills_ahead_total", "Fills ahead started for sequential readers of external or remote fields.", func() float64 { return float64(ts.FillsAhead.Load()) }),
	)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError{"--metrics: " + err.Error()}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	// Go's profiles (heap, CPU, goroutines) for finding where time and memory go in a running
	// mount: `go tool pprof http://ADDR/debug/pprof/heap`. Stack traces only, no documents.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
