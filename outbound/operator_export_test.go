package outbound

// SetRequeueBatch makes bulk retries requeue n deliveries per statement
// until the returned function restores the default.
func SetRequeueBatch(n int) (restore func()) {
	old := requeueBatch
	requeueBatch = n
	return func() { requeueBatch = old }
}
