package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// The property test below drives random event streams through the hub and
// compares every commission with an oracle written here, independently of
// the hub's ledger code: exact rational arithmetic with math/big, and the
// money rules of DESIGN.md stated directly.

// oracleRound rounds num/den half away from zero.
func oracleRound(num, den *big.Int) int64 {
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if new(big.Int).Mul(new(big.Int).Abs(r), big.NewInt(2)).Cmp(new(big.Int).Abs(den)) >= 0 {
		if (num.Sign() < 0) != (den.Sign() < 0) {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return q.Int64()
}

type oracleRefund struct {
	amount int64
	status string
	at     time.Time
}

// oracleNet is the commission a conversion must carry after all its facts:
// earned = round(rate × base); refunded money is the sum of the refunds
// whose latest state counts (capped at gross), its base share prorated,
// all of it once refunds reach gross or funds are withdrawn by a dispute;
// reversed = round(earned × refunded base / base).
func oracleNet(bps, base, gross int64, refunds map[string]oracleRefund, dispute string) int64 {
	earned := oracleRound(big.NewInt(bps*base), big.NewInt(10000))
	var refunded int64
	for _, r := range refunds {
		if r.status == hub.RefundSucceeded || r.status == hub.RefundPending {
			refunded += r.amount
		}
	}
	refunded = min(refunded, gross)
	rb := oracleRound(new(big.Int).Mul(big.NewInt(refunded), big.NewInt(base)), big.NewInt(gross))
	if refunded >= gross || dispute == hub.DisputeWithdrawn || dispute == hub.DisputeLost {
		rb = base
	}
	rb = min(rb, base)
	reversed := oracleRound(new(big.Int).Mul(big.NewInt(earned), big.NewInt(rb)), big.NewInt(base))
	return earned - reversed
}

type streamEvent struct {
	key string // dedupe key: a duplicate delivery repeats it
	n   hub.Normalized
}

// randomStream builds the events of one conversion and the oracle's
// expectation.
func randomStream(r *rand.Rand, i int, bps int64) ([]streamEvent, int64) {
	keys := []string{fmt.Sprintf("cs_%d", i), fmt.Sprintf("pi_%d", i)}
	charge := []string{fmt.Sprintf("pi_%d", i), fmt.Sprintf("ch_%d", i)}
	gross := int64(100 + r.IntN(100000))
	base := gross - int64(r.IntN(int(gross/4)+1))
	sold := t0.Add(time.Duration(i) * time.Minute)
	var evs []streamEvent
	add := func(n hub.Normalized) {
		evs = append(evs, streamEvent{key: fmt.Sprintf("evt_%d_%d", i, len(evs)), n: n})
	}
	add(sale(keys, base, gross, hub.Hints{PartnerCode: "alice"}))
	refunds := map[string]oracleRefund{}
	left := gross
	for j := range r.IntN(4) {
		if left <= 0 {
			break
		}
		amount := 1 + r.Int64N(left)
		if r.IntN(4) == 0 {
			amount = left // refund the rest
		}
		left -= amount
		id := fmt.Sprintf("re_%d_%d", i, j)
		at := sold.Add(time.Duration(j+1) * time.Hour)
		status := []string{hub.RefundSucceeded, hub.RefundPending, hub.RefundFailed}[r.IntN(3)]
		add(refund(charge, id, amount, status, at))
		final := oracleRefund{amount: amount, status: status, at: at}
		if status == hub.RefundPending && r.IntN(2) == 0 {
			later := []string{hub.RefundSucceeded, hub.RefundFailed}[r.IntN(2)]
			add(refund(charge, id, amount, later, at.Add(time.Minute)))
			final = oracleRefund{amount: amount, status: later, at: at.Add(time.Minute)}
		}
		if final.status == hub.RefundFailed {
			left += amount
		}
		refunds[id] = final
		if r.IntN(2) == 0 {
			// Stripe's charge.refunded reports the running total.
			var total int64
			for _, rf := range refunds {
				if rf.status != hub.RefundFailed {
					total += rf.amount
				}
			}
			add(cumulative(charge, fmt.Sprintf("ch_%d", i), total, final.at.Add(30*time.Second)))
		}
	}
	dispute := ""
	if r.IntN(4) == 0 {
		d := sold.Add(48 * time.Hour)
		add(dispute3(charge, hub.DisputeWithdrawn, d))
		dispute = hub.DisputeWithdrawn
		if r.IntN(2) == 0 {
			dispute = []string{hub.DisputeReinstated, hub.DisputeLost}[r.IntN(2)]
			add(dispute3(charge, dispute, d.Add(24*time.Hour)))
		}
	}
	// Duplicate deliveries repeat an event under its own dedupe key.
	for range r.IntN(3) {
		evs = append(evs, evs[r.IntN(len(evs))])
	}
	return evs, oracleNet(bps, base, gross, refunds, dispute)
}

// dispute3 is a dispute of the charge named by keys[1].
func dispute3(keys []string, status string, at time.Time) hub.Normalized {
	n := dispute(keys, status, at)
	n.Dispute.ExternalID = "dp_" + keys[1]
	return n
}

// TestLedgerMatchesOracle: random streams per conversion (sale, partial
// and full refunds with status changes, running totals as Stripe reports
// them, refunds before the sale, disputes won and lost, duplicate
// deliveries), delivered in random order across
// conversions and replayed, give exactly the oracle's commission.
func TestLedgerMatchesOracle(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 20261124}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			const bps = 1337
			f := newFixture(t, bps)
			r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
			want := map[string]int64{}
			var all []streamEvent
			for i := range 40 {
				evs, net := randomStream(r, i, bps)
				want[fmt.Sprintf("cs_%d", i)] = net
				all = append(all, evs...)
			}
			r.Shuffle(len(all), func(a, b int) { all[a], all[b] = all[b], all[a] })
			ctx := context.Background()
			deliver := func(ev streamEvent) {
				b, _ := json.Marshal(ev.n)
				in, _, err := f.svc.Ingest(ctx, f.src, hub.Receipt{DedupeKey: ev.key, EventType: "test"}, b)
				if err != nil {
					t.Fatal(err)
				}
				if err := f.svc.Process(ctx, in.ID); err != nil {
					t.Fatal(err)
				}
			}
			for _, ev := range all {
				deliver(ev)
			}
			// A replay of everything, as after a restart with a lost queue.
			for _, ev := range all {
				deliver(ev)
			}
			for key, net := range want {
				c := f.conv(key)
				com := f.commissionOf(c.ID)
				if com == nil {
					t.Fatalf("%s: no commission", key)
				}
				if com.NetMinor != net {
					t.Errorf("%s (base %d gross %d): net %d, oracle %d; entries %+v", key, c.BaseMinor, c.GrossMinor, com.NetMinor, net, com.Entries)
				}
				if com.NetMinor < 0 {
					t.Errorf("%s: net %d below zero", key, com.NetMinor)
				}
			}
		})
	}
}
