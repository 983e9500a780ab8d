package lambda

import "time"

// SetClock makes h read the time from now, so the stack tests can step
// through signing windows and the "not found" TTL without waiting.
func SetClock(h *Handler, now func() time.Time) { h.now = now }

// NotFoundTTL is notFoundTTL, for the stack tests.
const NotFoundTTL = notFoundTTL
