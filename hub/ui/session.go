package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"sync"
	"time"
)

// session is a signed-in browser: the API key it acts with and what the
// login found out about it.
type session struct {
	key         string // the API key; never rendered
	role        string
	partnerID   string // partner keys
	partnerCode string
	partnerName string
	csrf        string
	seen        time.Time
	flash       flash
}

// flash is shown once, on the next page.
type flash struct {
	Msg    string
	Err    string
	Secret string // a new endpoint secret, shown once
}

// sessions is the in-memory session store. Sessions are kept under the
// SHA-256 of their cookie value and expire after idle without a request.
type sessions struct {
	mu   sync.Mutex
	idle time.Duration
	now  func() time.Time
	m    map[string]*session
}

func newSessions(idle time.Duration, now func() time.Time) *sessions {
	return &sessions{idle: idle, now: now, m: map[string]*session{}}
}

func token() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// create stores s and returns the cookie value naming it. Expired
// sessions are dropped on the way.
func (ss *sessions) create(s *session) string {
	id := token()
	s.csrf = token()
	now := ss.now()
	s.seen = now
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, old := range ss.m {
		if now.Sub(old.seen) > ss.idle {
			delete(ss.m, k)
		}
	}
	ss.m[hashID(id)] = s
	return id
}

// get returns the live session of a cookie value, or nil; touch marks it
// used.
func (ss *sessions) get(id string, touch bool) *session {
	if id == "" {
		return nil
	}
	k := hashID(id)
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[k]
	if s == nil {
		return nil
	}
	if now.Sub(s.seen) > ss.idle {
		delete(ss.m, k)
		return nil
	}
	if touch {
		s.seen = now
	}
	return s
}

func (ss *sessions) delete(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, hashID(id))
}

// setFlash and takeFlash pass a message to the next page.
func (ss *sessions) setFlash(s *session, f flash) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s.flash = f
}

func (ss *sessions) takeFlash(s *session) flash {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f := s.flash
	s.flash = flash{}
	return f
}
