package hub

import "time"

// SetIngestLinger changes how an ingest commit waits for company: while
// webhooks come at least one per pace, until gather are pending or
// linger has passed (16 ms, 5 ms and 8 in production; a zero linger
// turns it off).
func SetIngestLinger(s *Service, linger, pace time.Duration, gather int) {
	s.ingest.mu.Lock()
	defer s.ingest.mu.Unlock()
	s.ingest.linger, s.ingest.pace, s.ingest.gather = linger, pace, gather
}
