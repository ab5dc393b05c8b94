package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/partnerhub/partnerhub/outbound"
)

// newListenCmd is a development receiver for partner-event webhooks: it
// verifies each delivery's Standard Webhooks signature and prints the
// event, as a partner's automation would receive it.
func newListenCmd(stdout io.Writer) *cobra.Command {
	var addr, secret string
	cmd := &cobra.Command{
		Use:   "listen",
		Short: "Receive partner-event webhooks locally, verify their signatures and print them",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !strings.HasPrefix(secret, "whsec_") {
				return errors.New("--secret must be the endpoint's whsec_ signing secret")
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "listening on http://%s, verifying with the endpoint secret\n", ln.Addr())
			srv := &http.Server{Handler: listenHandler(secret, stdout, time.Now), ReadHeaderTimeout: 5 * time.Second}
			go func() {
				<-cmd.Context().Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:9000", "address to listen on")
	cmd.Flags().StringVar(&secret, "secret", "", "the endpoint's whsec_ signing secret (required)")
	return cmd
}

// verifyDelivery checks a Standard Webhooks signature: any v1 signature in
// the header must match the HMAC of id.timestamp.body under secret, and the
// timestamp must be within five minutes of now.
func verifyDelivery(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("malformed webhook-timestamp")
	}
	t := time.Unix(sec, 0)
	if d := now.Sub(t); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s is outside the 5 minute tolerance", t.UTC().Format(time.RFC3339))
	}
	want, err := outbound.Sign([]string{secret}, id, t, body)
	if err != nil {
		return err
	}
	for _, s := range strings.Fields(sigs) {
		if subtle.ConstantTimeCompare([]byte(s), []byte(want)) == 1 {
			return nil
		}
	}
	return errors.New("no signature matches the secret")
}

func listenHandler(secret string, out io.Writer, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := verifyDelivery(secret, r.Header, body, now()); err != nil {
			fmt.Fprintf(out, "REJECTED %s: %v\n", r.Header.Get("webhook-id"), err)
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, body, "", "  ") != nil {
			pretty.Write(body)
		}
		var env struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(body, &env)
		fmt.Fprintf(out, "%s  %s  signature verified\n%s\n", r.Header.Get("webhook-id"), env.Type, pretty.String())
		w.WriteHeader(http.StatusNoContent)
	})
}
