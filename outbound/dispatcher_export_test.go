package outbound

import "time"

// SetRequeueDelay changes how long after a held-back attempt its task is
// queued again (250 ms in production, for asynq to free the task id).
func SetRequeueDelay(d *Dispatcher, v time.Duration) { d.requeueDelay = v }

// SetLocalHold changes the longest hold waited out in process (5 s in
// production).
func SetLocalHold(d *Dispatcher, v time.Duration) { d.localHold = v }

// WaitRequeues waits until the held-back deliveries are queued again.
func WaitRequeues(d *Dispatcher) { d.requeues.Wait() }

// SetPace sets the moving average of an endpoint's attempt durations.
func SetPace(d *Dispatcher, endpointID string, v time.Duration) {
	d.endpoint(endpointID).pace.Store(int64(v))
}

// Pace returns the moving average of an endpoint's attempt durations.
func Pace(d *Dispatcher, endpointID string) time.Duration {
	return time.Duration(d.endpoint(endpointID).pace.Load())
}

// Closing reports whether Close has begun: DeliverNew takes nothing more
// and the line of waiting first attempts is dropped.
func Closing(d *Dispatcher) bool {
	d.waitMu.Lock()
	defer d.waitMu.Unlock()
	return d.waitClosed
}

// SetSlotWait changes how long an attempt waits in a busy endpoint's line
// at most (1 s in production).
func SetSlotWait(d *Dispatcher, v time.Duration) { d.slotWait = v }

// InLine returns how many first attempts wait for a slot of an endpoint.
func InLine(d *Dispatcher, endpointID string) int {
	es := d.endpoint(endpointID)
	es.mu.Lock()
	defer es.mu.Unlock()
	return len(es.line)
}

// SetEndpointFresh changes how old the endpoint row an attempt that
// waited in line sends with may be (100 ms in production).
func SetEndpointFresh(d *Dispatcher, v time.Duration) { d.endpointFresh = v }

// InFlight returns how many slots of an endpoint are taken.
func InFlight(d *Dispatcher, endpointID string) int64 {
	return d.endpoint(endpointID).inFlight.Load()
}

// KeepsRow reports whether the dispatcher keeps a read of an endpoint for
// the attempts in its line.
func KeepsRow(d *Dispatcher, endpointID string) bool {
	return d.endpoint(endpointID).seen.Load() != nil
}

// Resumed returns how many attempts that left a line are running.
func Resumed(d *Dispatcher) int64 { return d.resumedN.Load() }

// BreakerRequests returns how many requests an endpoint's breaker counts
// in its current window.
func BreakerRequests(d *Dispatcher, endpointID string) uint32 {
	return d.endpoint(endpointID).cb.Counts().Requests
}
