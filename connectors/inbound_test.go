package connectors

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	dto "github.com/prometheus/client_model/go"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/metrics"
)

// waitingIngester holds every webhook until the request's context ends,
// as a group commit does while the sender hangs up.
type waitingIngester struct{ started chan struct{} }

func (i *waitingIngester) Ingest(ctx context.Context, _ *hub.Source, _ hub.Receipt, _ []byte) (*hub.InboundEvent, bool, error) {
	close(i.started)
	<-ctx.Done()
	return nil, false, fmt.Errorf("storing inbound event: %w", ctx.Err())
}

// inboundOutcomes reads partnerhub_inbound_webhooks_total by outcome for
// provider.
func inboundOutcomes(t *testing.T, provider string) map[string]float64 {
	t.Helper()
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "partnerhub_inbound_webhooks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "provider") == provider {
				out[label(m, "outcome")] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestInboundSenderGone: a sender that hangs up while its webhook waits
// to be stored is counted as canceled, not as the hub's error, and logged
// as a warning, not an error; the webhook was never acknowledged, so the
// provider sends it again.
func TestInboundSenderGone(t *testing.T) {
	src := &hub.Source{ID: "src_gone", ProgramID: hub.DefaultProgramID, Provider: "stripe", Secret: "whsec_" + strings.Repeat("ab", 16)}
	sample, err := NewSample(src, SampleRequest{Event: "checkout.session.completed"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ing := &waitingIngester{started: make(chan struct{})}
	in := NewInbound(InboundConfig{}, NewRegistry(NewStripe(StripeConfig{})), wooSources{src.ID: src}, ing)
	e := echo.New()
	e.HTTPErrorHandler = hub.ErrorHandler
	in.Mount(e.Group("/in"))

	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, nil)))
	defer slog.SetDefault(prev)
	before := inboundOutcomes(t, "stripe")

	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodPost, "/in/"+src.ID, bytes.NewReader(sample.Body)).WithContext(ctx)
	req.Header = sample.Header.Clone()
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.ServeHTTP(rec, req)
	}()
	<-ing.started
	cancel()
	<-done

	if rec.Code != hub.StatusClientClosedRequest {
		t.Errorf("status %d, want %d", rec.Code, hub.StatusClientClosedRequest)
	}
	after := inboundOutcomes(t, "stripe")
	for _, o := range []string{metrics.InboundCanceled, metrics.InboundError, metrics.InboundAccepted} {
		want := 0.0
		if o == metrics.InboundCanceled {
			want = 1
		}
		if d := after[o] - before[o]; d != want {
			t.Errorf("outcome %s grew by %v, want %v", o, d, want)
		}
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), `"msg":"request canceled before its answer"`) {
		t.Errorf("a sender hanging up was not logged as one warning: %s", logs.String())
	}
}

// canceledIngester fails with a canceled context of its own, while the
// request goes on.
type canceledIngester struct{}

func (canceledIngester) Ingest(context.Context, *hub.Source, hub.Receipt, []byte) (*hub.InboundEvent, bool, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return nil, false, fmt.Errorf("storing inbound event: %w", ctx.Err())
}

// TestInboundCanceledInside: a context canceled inside the hub, with the
// sender still waiting, is the hub's error (500), not a sender gone.
func TestInboundCanceledInside(t *testing.T) {
	src := &hub.Source{ID: "src_inside", ProgramID: hub.DefaultProgramID, Provider: "stripe", Secret: "whsec_" + strings.Repeat("ef", 16)}
	sample, err := NewSample(src, SampleRequest{Event: "checkout.session.completed"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	in := NewInbound(InboundConfig{}, NewRegistry(NewStripe(StripeConfig{})), wooSources{src.ID: src}, canceledIngester{})
	e := echo.New()
	e.HTTPErrorHandler = hub.ErrorHandler
	in.Mount(e.Group("/in"))
	before := inboundOutcomes(t, "stripe")
	req := httptest.NewRequest(http.MethodPost, "/in/"+src.ID, bytes.NewReader(sample.Body))
	req.Header = sample.Header.Clone()
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", rec.Code)
	}
	after := inboundOutcomes(t, "stripe")
	if d := after[metrics.InboundError] - before[metrics.InboundError]; d != 1 {
		t.Errorf("outcome error grew by %v, want 1", d)
	}
	if d := after[metrics.InboundCanceled] - before[metrics.InboundCanceled]; d != 0 {
		t.Errorf("outcome canceled grew by %v, want 0", d)
	}
}
