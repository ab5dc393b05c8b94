package hub

import (
	"context"
	"time"
)

// Task type names on the queue.
const (
	TaskProcess = "hub:process"
	// TaskProcessBatch processes several inbound events stored together.
	TaskProcessBatch = "hub:process-batch"
	TaskDeliver      = "outbound:deliver"
	TaskSweep        = "hub:sweep"
	TaskReconcile    = "hub:reconcile"
)

// Queue enqueues jobs. A task carries only an id; the row holds the state.
// Implementations treat "a task with this id is already queued" as success.
type Queue interface {
	// EnqueueProcess queues hub:process for an inbound event.
	EnqueueProcess(ctx context.Context, inboundID string) error
	// EnqueueDelivery queues attempt number attempt (1-based) of a
	// delivery to run at at (now or earlier: immediately). The task id is
	// deliveryID + ":" + attempt, so an attempt is queued once.
	EnqueueDelivery(ctx context.Context, deliveryID string, attempt int, at time.Time) error
}
