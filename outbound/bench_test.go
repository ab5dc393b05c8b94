package outbound_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
	"github.com/partnerhub/partnerhub/hub/queue"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
	"github.com/partnerhub/partnerhub/outbound"
)

// The throughput benchmark: N signed deliveries to a fast local receiver
// (keep-alive, 204), driven through Dispatcher.Deliver by a pool of
// workers as asynq's worker would run them, on SQLite and, with
// DATABASE_URL set, PostgreSQL. Each delivery is a real attempt: the row,
// its event and endpoint are loaded, the envelope is signed and POSTed,
// and the attempt is recorded (in batches). The queue is not in the loop.
//
//	go test -run '^$' -bench BenchmarkDeliver -benchtime 20000x ./outbound/
//	DATABASE_URL=postgres://… go test -run '^$' -bench BenchmarkDeliver -benchtime 50000x ./outbound/
//
// Reported: deliveries/s; heap_retained_MB, the live heap after the run
// minus the live heap before it (after a GC both times): flat, whatever N;
// heap_peak_MB, the largest heap in use during the run minus the heap
// before it, which grows with the benchmark's own list of N ids (the GC
// lets garbage reach the size of the live heap); and the batch sizes the
// load gave (loads/query, attempts/tx).

// BenchmarkDeliverQueue is BenchmarkDeliver with asynq in the loop: the
// deliveries are queued on Redis (BENCH_REDIS_URL; it is skipped without)
// and drained by two asynq Servers (hub/queue workers) of 64 workers
// each, sharing one dispatcher, as a worker process would run them. Use
// a Redis of its own (the benchmark leaves its queue behind):
//
//	redis-server --port 6390 --save '' --appendonly no &
//	BENCH_REDIS_URL=redis://127.0.0.1:6390 DATABASE_URL=postgres://… \
//	  go test -run '^$' -bench BenchmarkDeliverQueue -benchtime 50000x ./outbound/
func BenchmarkDeliverQueue(b *testing.B) {
	redisURL := os.Getenv("BENCH_REDIS_URL")
	if redisURL == "" {
		b.Skip("BENCH_REDIS_URL is not set")
	}
	const servers, concurrency = 2, 64
	for _, db := range benchStores(b) {
		b.Run(db.name, func(b *testing.B) {
			st := db.open(b)
			rc := fastReceiver(b)
			ep := &hub.Endpoint{URL: rc.URL + "/hook", Enabled: true, Secret: outbound.NewSecret(),
				EndpointSettings: hub.EndpointSettings{MaxInFlight: servers * concurrency}}
			if err := st.CreateEndpoint(context.Background(), ep); err != nil {
				b.Fatal(err)
			}
			ids := createDeliveries(b, st, b.N)
			d := benchDispatcher(b, st, outbound.Config{MaxInFlight: 2 * servers * concurrency})
			name := "bench" + hub.NewID("")
			var qs []*queue.Queue
			for range servers {
				q, err := queue.Open(queue.Config{RedisURL: redisURL, Name: name, Concurrency: concurrency,
					PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(q.Close)
				qs = append(qs, q)
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := int(next.Add(1)) - 1; i < len(ids); i = int(next.Add(1)) - 1 {
						if err := qs[0].EnqueueDelivery(context.Background(), ids[i], 1, time.Time{}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ResetTimer()
			start := time.Now()
			for _, q := range qs {
				err := q.StartWorker(queue.Handlers{
					Deliver: d.Deliver,
					Process: func(context.Context, string) error { return nil },
					Sweep:   func(context.Context) error { return nil },
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			for {
				var n int
				if err := st.SQL().QueryRowContext(context.Background(),
					"SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'").Scan(&n); err != nil {
					b.Fatal(err)
				}
				if n == b.N {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
		})
	}
}

// benchWorkers is the size of the benchmark's worker pool.
const benchWorkers = 64

func BenchmarkDeliver(b *testing.B) {
	for _, db := range benchStores(b) {
		b.Run(db.name, func(b *testing.B) {
			st := db.open(b)
			rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			}))
			b.Cleanup(rc.Close)
			ep := &hub.Endpoint{URL: rc.URL + "/hook", Enabled: true, Secret: outbound.NewSecret(),
				EndpointSettings: hub.EndpointSettings{MaxInFlight: benchWorkers}}
			if err := st.CreateEndpoint(context.Background(), ep); err != nil {
				b.Fatal(err)
			}
			ids := createDeliveries(b, st, b.N)
			cs := &countingStore{Store: st}
			d := benchDispatcher(b, cs, outbound.Config{})

			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before, heapBefore := ms.HeapInuse, ms.HeapAlloc
			var peak atomic.Uint64
			stop := sampleHeap(&peak)
			b.ResetTimer()
			start := time.Now()
			errs := drive(d, benchWorkers, ids)
			elapsed := time.Since(start)
			b.StopTimer()
			stop()
			if errs > 0 {
				b.Fatalf("%d Deliver errors", errs)
			}
			checkSucceeded(b, st, ep.ID, b.N)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(peak.Load()-min(before, peak.Load()))/(1<<20), "heap_peak_MB")
			b.ReportMetric((float64(ms.HeapAlloc)-float64(heapBefore))/(1<<20), "heap_retained_MB")
			b.ReportMetric(float64(cs.loaded.Load())/float64(cs.loads.Load()), "loads/query")
			b.ReportMetric(float64(cs.recorded.Load())/float64(cs.records.Load()), "attempts/tx")
		})
	}
}

type benchStore struct {
	name string
	open func(b *testing.B) *store.DB
}

// benchStores are SQLite, and PostgreSQL when DATABASE_URL is set.
func benchStores(b *testing.B) []benchStore {
	out := []benchStore{{"sqlite", func(b *testing.B) *store.DB { return storetest.OpenSQLite(b) }}}
	if url := os.Getenv("DATABASE_URL"); url != "" {
		out = append(out, benchStore{"postgres", func(b *testing.B) *store.DB { return storetest.OpenURL(b, url) }})
	}
	return out
}

// benchDispatcher is a dispatcher allowed to reach 127.0.0.1.
func benchDispatcher(tb testing.TB, st outbound.Store, cfg outbound.Config) *outbound.Dispatcher {
	tb.Helper()
	if cfg.Client == nil {
		cfg.Client = netguard.NewClient(netguard.Config{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 2 * benchWorkers
	}
	d, err := outbound.New(cfg, st, nopQueue{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	return d
}

// countingStore counts the batches the dispatcher makes.
type countingStore struct {
	outbound.Store
	loads, loaded, records, recorded atomic.Int64
}

func (s *countingStore) DeliveryTargets(ctx context.Context, ids []string) ([]*hub.Delivery, []*hub.Event, []*hub.Endpoint, error) {
	s.loads.Add(1)
	s.loaded.Add(int64(len(ids)))
	return s.Store.DeliveryTargets(ctx, ids)
}

func (s *countingStore) RecordAttempts(ctx context.Context, ds []*hub.Delivery, as []*hub.Attempt) []error {
	s.records.Add(1)
	s.recorded.Add(int64(len(ds)))
	return s.Store.RecordAttempts(ctx, ds, as)
}

// nopQueue drops what it is given: the benchmark's deliveries succeed.
type nopQueue struct{}

func (nopQueue) EnqueueProcess(context.Context, string) error { return nil }

func (nopQueue) EnqueueDelivery(context.Context, string, int, time.Time) error { return nil }

// createDeliveries writes n commission.created events through the store
// (InsertEvent, 500 per transaction, several transactions at once on
// PostgreSQL) and returns their deliveries' ids, oldest first.
func createDeliveries(tb testing.TB, st *store.DB, n int) []string {
	tb.Helper()
	const perTx = 500
	ids := make([]string, n)
	data := json.RawMessage(`{"commission_id":"com_01jc5m0000000000000000000","conversion_id":"cnv_01jc5m0000000000000000000","partner_id":"ptn_01jc5m0000000000000000000","amount_minor":1234,"currency":"EUR","status":"pending"}`)
	par := 1
	if st.Dialect() == store.DialectPostgres {
		par = 8
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(perTx)) - perTx
				if lo >= n {
					return
				}
				hi := min(lo+perTx, n)
				err := st.InTx(context.Background(), func(tx hub.Tx) error {
					for i := lo; i < hi; i++ {
						ds, err := tx.InsertEvent(context.Background(), &hub.Event{Type: "commission.created", Data: data})
						if err != nil {
							return err
						}
						if len(ds) != 1 {
							return fmt.Errorf("%d deliveries per event, want 1", len(ds))
						}
						ids[i] = ds[0].ID
					}
					return nil
				})
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		tb.Fatalf("creating deliveries: %v", err)
	}
	return ids
}

// drive runs attempt 1 of every delivery through Deliver with a pool of
// workers and returns how many calls failed.
func drive(d *outbound.Dispatcher, workers int, ids []string) int {
	ch := make(chan string, workers)
	var errs atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ch {
				if err := d.Deliver(context.Background(), id, 1); err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	for _, id := range ids {
		ch <- id
	}
	close(ch)
	wg.Wait()
	return int(errs.Load())
}

// checkSucceeded fails unless n deliveries to the endpoint succeeded.
func checkSucceeded(tb testing.TB, st *store.DB, endpointID string, n int) {
	tb.Helper()
	var got int
	if err := st.SQL().QueryRowContext(context.Background(),
		"SELECT COUNT(*) FROM deliveries WHERE endpoint_id = '"+endpointID+"' AND status = 'succeeded'").Scan(&got); err != nil {
		tb.Fatal(err)
	}
	if got != n {
		tb.Fatalf("%d deliveries succeeded, want %d", got, n)
	}
}

// sampleHeap records the largest HeapInuse seen every 100 ms until stop
// is called.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
