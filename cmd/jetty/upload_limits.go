package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/units"
	"github.com/jettythunder/jetty/protocol"
)

// checkLimits refuses, before any byte of them is read, the files the
// account's tier or quota cannot take: larger than the tier's largest
// file, or than the storage left. It asks the server's quota once per
// command, and only when a file is larger than a small one (those go in
// one request the server refuses on its declared length). When the
// quota cannot be asked, the server's own checks decide as before.
func checkLimits(ctx context.Context, ec *engine.Client, jobs []uploadJob) {
	need := false
	for _, j := range jobs {
		need = need || (j.err == nil && !j.stdin && j.size > engine.DefaultSmallFileMax)
	}
	if !need {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	q, err := ec.Quota(qctx)
	if err != nil {
		return
	}
	for i, j := range jobs {
		if j.err == nil && !j.stdin {
			jobs[i].err = limitError(q, j.size)
		}
	}
}

// limitError says why a file of size bytes does not fit q (nil: it
// fits), with advice for the limit it hits.
func limitError(q protocol.Quota, size int64) error {
	if max := q.Limits.MaxFileSizeBytes; max > 0 && size > max {
		advice := "split the file; `jetty quota` shows your tier"
		for _, t := range q.Tiers {
			if t.MaxFileSizeBytes >= size {
				advice = fmt.Sprintf("files over %s need tier %s or higher: upgrade, or split the file; `jetty quota` shows your tier", units.HumanBytes(max), t.Tier)
				break
			}
		}
		return &ExitError{Code: ExitQuota, Err: fmt.Errorf("file is %s; tier %s allows at most %s per file: nothing was read or sent\n(%s)",
			units.HumanBytes(size), q.Tier, units.HumanBytes(max), advice)}
	}
	st := q.Storage
	if q.Limits.MaxFileSizeBytes > 0 { // a server that reports bytes
		if free := max(st.AvailableBytes, 0); size > free {
			advice := "delete files (`jetty ls`, `jetty rm`) or upgrade your tier"
			need := st.UsedBytes + st.ReservedBytes + size
			for _, t := range q.Tiers {
				if t.StorageQuotaBytes >= need && t.MaxFileSizeBytes >= size {
					advice = fmt.Sprintf("delete files (`jetty ls`, `jetty rm`) or upgrade to tier %s", t.Tier)
					break
				}
			}
			return &ExitError{Code: ExitQuota, Err: fmt.Errorf("file is %s but only %s of your %s storage quota is free: nothing was read or sent\n(%s)",
				units.HumanBytes(size), units.HumanBytes(free), units.HumanBytes(st.QuotaBytes), advice)}
		}
	}
	return nil
}
