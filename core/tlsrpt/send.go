package tlsrpt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/idna"
	"golang.org/x/sync/errgroup"
)

const (
	sendWorkers = 8                // domains sent to at once
	finalFlush  = 10 * time.Second // Run's last write, after its ctx ended
)

// randomDelay is how long after 00:00 UTC a Reporter sends the day that
// ended: one to three hours, so that reporters do not all send at once
// (§4.1).
func randomDelay() time.Duration { return time.Hour + rand.N(2*time.Hour) }

// Run writes the counts to the Store every minute and sends each finished
// day's reports once its send time has come (at start too, for the days a
// stop left unsent), retrying undelivered ones hourly, until ctx ends; then
// it writes the counts once more, under a deadline of its own, and
// returns. Its owner cancels ctx and waits for Run to return before it
// closes the Store.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.tick)
	defer t.Stop()
	var next time.Time
	for {
		if now := r.now(); !now.Before(next) {
			next = r.sendDue(ctx, now)
		}
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlush)
			defer cancel()
			if err := r.flush(fctx); err != nil {
				r.log.Error("tlsrpt: counts not written at stop", "err", err)
			}
			return
		case <-t.C:
			if err := r.flush(ctx); err != nil {
				r.log.Warn("tlsrpt: counts not written; will retry", "err", err)
			}
		}
	}
}

// sendDue sends every day whose send time has come and returns when to
// look again: within r.retry when a report is still undelivered, else at
// the next day's send time.
func (r *Reporter) sendDue(ctx context.Context, now time.Time) time.Time {
	retry := false
	if err := r.flush(ctx); err != nil {
		r.log.Warn("tlsrpt: counts not written; will retry", "err", err)
	}
	days, err := r.storedDays(now)
	if err != nil {
		r.log.Warn("tlsrpt: cannot list the days to report", "err", err)
		retry = true
	}
	for _, day := range days {
		if now.Before(day.Add(24*time.Hour + r.sendDelay)) {
			continue
		}
		if err := r.SendDay(ctx, day); err != nil {
			r.log.Warn("tlsrpt: reports not all delivered; will retry", "err", err)
			retry = true
		}
	}
	next := now.UTC().Truncate(24 * time.Hour).Add(r.sendDelay)
	if !next.After(now) {
		next = next.Add(24 * time.Hour)
	}
	if retry && now.Add(r.retry).Before(next) {
		next = now.Add(r.retry)
	}
	return next
}

// storedDays lists the days the store holds counts of, oldest first.
func (r *Reporter) storedDays(now time.Time) ([]time.Time, error) {
	keys, err := r.store.KVKeys(keyPrefix, now)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	var days []time.Time
	for _, key := range keys {
		k, ok := parseKey(key)
		if !ok {
			continue
		}
		day, _ := time.Parse(time.DateOnly, k.day)
		if !slices.Contains(days, day) {
			days = append(days, day)
		}
	}
	slices.SortFunc(days, time.Time.Compare)
	return days, nil
}

// SendDay sends the reports of the UTC day that holds day. It first writes
// the counts still in memory to the Store; then each domain counted that
// day gets its report at every rua it publishes that has not had it yet.
// A domain without a TLSRPT record loses its counts; a report that reached
// every rua is removed; the others stay for a later SendDay (Run retries
// them). The error says how many reports are still undelivered.
func (r *Reporter) SendDay(ctx context.Context, day time.Time) error {
	r.storeMu.Lock()
	defer r.storeMu.Unlock()
	if err := r.flushLocked(ctx); err != nil {
		return err
	}
	d := dayOf(day)
	keys, err := r.store.KVKeys(keyPrefix+d+":", r.now())
	if err != nil {
		return fmt.Errorf("tlsrpt: send %s: %w", d, err)
	}
	var g errgroup.Group
	g.SetLimit(sendWorkers)
	var failed atomic.Int64
	for _, key := range keys {
		k, ok := parseKey(key)
		if !ok || k.day != d {
			continue
		}
		g.Go(func() error {
			err := r.sendDomain(ctx, k)
			if err != nil {
				failed.Add(1)
				r.log.Warn("tlsrpt: report not delivered", "domain", k.domain, "day", k.day, "err", err)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("tlsrpt: send %s: %d of %d reports undelivered, first: %w", d, failed.Load(), len(keys), err)
	}
	return nil
}

// sendDomain sends k's report to the rua that have not had it and removes
// the counts once every rua has; it keeps them, with the rua served so
// far, when one failed.
func (r *Reporter) sendDomain(ctx context.Context, k dayDomain) error {
	now := r.now()
	c, err := r.load(k, now)
	if err != nil {
		return err
	}
	if len(c.Policies) == 0 {
		return r.drop(ctx, k)
	}
	ascii, err := asciiDomain(k.domain)
	if err != nil {
		r.log.Info("tlsrpt: no report for a name that is not a domain", "domain", k.domain, "err", err)
		return r.drop(ctx, k)
	}
	dests, err := r.destinations(ctx, ascii)
	if errors.Is(err, errNoRecord) {
		r.log.Debug("tlsrpt: no report wanted", "domain", k.domain, "day", k.day, "reason", err)
		return r.drop(ctx, k)
	}
	if err != nil {
		return err
	}
	rep, err := r.build(k, ascii, c)
	if err != nil {
		return err
	}
	err = r.deliver(ctx, rep, dests, c)
	if err == nil {
		r.log.Info("tlsrpt: report sent", "domain", k.domain, "day", k.day, "report_id", rep.ReportID)
		return r.drop(ctx, k)
	}
	if serr := r.save(ctx, k, c, now); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// asciiDomain is d with A-labels, as headers and file names want it.
func asciiDomain(d string) (string, error) {
	if isASCII(d) {
		return d, nil
	}
	return idna.Lookup.ToASCII(d)
}

// deliver sends rep to each rua not in c.Sent: one mail to all the mailto
// addresses, one POST per HTTPS URL. Each rua that took it joins c.Sent.
func (r *Reporter) deliver(ctx context.Context, rep *report, dests []dest, c *counts) error {
	var errs []error
	var to, mailURIs []string
	for _, d := range dests {
		if slices.Contains(c.Sent, d.uri) {
			continue
		}
		if d.https == nil {
			mailURIs = append(mailURIs, d.uri)
			for _, a := range d.mailto {
				if !slices.Contains(to, a) {
					to = append(to, a)
				}
			}
			continue
		}
		if err := r.post.send(ctx, d.https, rep.gz); err != nil {
			errs = append(errs, err)
			continue
		}
		c.Sent = append(c.Sent, d.uri)
	}
	if len(to) > 0 {
		if err := r.sendMail(ctx, rep, to); err != nil {
			errs = append(errs, err)
		} else {
			c.Sent = append(c.Sent, mailURIs...)
		}
	}
	return errors.Join(errs...)
}

func (r *Reporter) sendMail(ctx context.Context, rep *report, to []string) error {
	if r.mail == nil {
		return errors.New("tlsrpt: mailto rua but no way to send mail")
	}
	msg, err := r.message(rep, to, r.now())
	if err != nil {
		return err
	}
	if err := r.mail(ctx, r.from, to, msg); err != nil {
		return fmt.Errorf("tlsrpt: mail to %s: %w", strings.Join(to, ", "), err)
	}
	return nil
}
