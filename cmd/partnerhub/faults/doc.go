// Package faults is partnerhub's fault-injection suite: it runs the
// partnerhub binary as subprocesses against private PostgreSQL and Redis
// servers, kills, flushes and stops them in the middle of a load of signed
// Stripe webhooks, and checks in the database that nothing accepted was
// lost or doubled and that every outbound event reached its receiver.
//
// The tests are behind the build tag "faults" (go test -tags faults
// ./cmd/partnerhub/faults/); a plain go test ./... does not run them.
package faults
