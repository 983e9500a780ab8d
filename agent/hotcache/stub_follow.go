package hotcache

import (
	"context"
	"time"
)

// TEMPORARY until the i18-accesslog branch lands.
type Request struct {
	Method string
	Target string
	Status int
	Time   time.Time
}

func ParseLine(line []byte) (Request, error) { return Request{}, nil }

type Follower struct {
	Path    string
	Poll    time.Duration
	Lines   func(Request)
	Problem func(err error)
}

type FollowStats struct {
	Lines, Unparsed int64
	State           string
}

func (f *Follower) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (f *Follower) Stats() FollowStats            { return FollowStats{} }

const StateFollowing = "following"
