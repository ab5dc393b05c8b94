package outbound

import "time"

// SetRequeueDelay changes how long after a held-back attempt its task is
// queued again (250 ms in production, for asynq to free the task id).
func SetRequeueDelay(d *Dispatcher, v time.Duration) { d.requeueDelay = v }

// WaitRequeues waits until the held-back deliveries are queued again.
func WaitRequeues(d *Dispatcher) { d.requeues.Wait() }
