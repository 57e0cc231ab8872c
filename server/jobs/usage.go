package jobs

import (
	"context"
	"time"

	"github.com/jettythunder/jetty/server"
)

// maxCatchUpDays bounds how far back the usage roll-up goes: after a
// longer outage the older days are left without rows (and logged).
const maxCatchUpDays = 400

// rollup writes the usage rows of every day that is not final yet, from
// the day after the last final one (or the oldest account's first day)
// up to today: the days over for longer than server.UsageSettle become
// final, the others (today, and yesterday in its first minutes) are
// written as provisional rows, rewritten by the next pass. Each day is
// one idempotent store call, so passes that overlap (two instances, a
// lease that ran out) write the same rows.
func (r *Runner) rollup(ctx context.Context, now time.Time) (int, error) {
	w, err := r.Store.UsageWatermark(ctx)
	if err != nil {
		return 0, err
	}
	if w.FirstAccount.IsZero() {
		return 0, nil // no account, no usage
	}
	today := server.UsageDay(now)
	first := server.UsageDay(w.FirstAccount)
	if !w.LastFinal.IsZero() {
		first = w.LastFinal.AddDate(0, 0, 1)
	} else if keep := r.RequestLogRetention; keep > 0 {
		// The first roll-up after migration 0010: the days whose
		// requests the log still holds, not older ones (their rows stay
		// as the old roll-up wrote them).
		if since := server.UsageDay(now.Add(-keep)).AddDate(0, 0, 1); since.After(first) {
			first = since
		}
	}
	if oldest := today.AddDate(0, 0, -maxCatchUpDays); first.Before(oldest) {
		r.log().Warn("usage roll-up: days too old to catch up are left without rows", "from", first.Format(time.DateOnly), "to", oldest.AddDate(0, 0, -1).Format(time.DateOnly))
		first = oldest
	}
	total := 0
	for day := first; !day.After(today); day = day.AddDate(0, 0, 1) {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		final := !now.Before(day.AddDate(0, 0, 1).Add(server.UsageSettle))
		n, err := r.Store.RollupUsageDay(ctx, day, final)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
