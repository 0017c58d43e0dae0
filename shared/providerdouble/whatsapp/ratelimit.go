package whatsappdouble

import "time"

// bucket is a token bucket: burst tokens, refilled at rate per second.
type bucket struct {
	tokens float64
	last   time.Time
}

// allow takes a token from phone's bucket. The throughput limit uses the
// real clock so that pacing tests measure real time.
func (s *Server) allow(phone string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rate <= 0 {
		return true
	}
	now := time.Now()
	b := s.buckets[phone]
	if b == nil {
		b = &bucket{tokens: float64(s.burst), last: now}
		s.buckets[phone] = b
	}
	b.tokens = min(float64(s.burst), b.tokens+now.Sub(b.last).Seconds()*s.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
