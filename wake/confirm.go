package wake

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/crrelay/crrelay/registry"
)

// EventConnectionRequest is the Inform event code (TR-069 Table 7) a CPE
// sends in the session a connection request started.
const EventConnectionRequest = "6 CONNECTION REQUEST"

// Limits on what Inform accepts: TR-069 event codes are short, and an
// Inform carries at most a few dozen.
const (
	MaxInformEvents   = 64
	MaxEventCodeBytes = 64
)

// Confirmation is the answer to Inform.
type Confirmation struct {
	Device    string `json:"device"`
	Confirmed bool   `json:"confirmed"`
	// WakeID is the wake confirmed, ConfirmMS the time from it to this
	// Inform.
	WakeID    string  `json:"wake_id,omitempty"`
	ConfirmMS float64 `json:"confirm_ms,omitempty"`
	// Reason says why nothing was confirmed, or that the wake confirmed
	// is still in progress.
	Reason string `json:"reason,omitempty"`
	// Wake is the wake confirmed, as recorded; absent while it is still
	// in progress (its record will carry the confirmation).
	Wake *registry.WakeRecord `json:"wake,omitempty"`
}

// checkInformEvents validates the event codes an ACS reports.
func checkInformEvents(events []string) error {
	if len(events) == 0 {
		return fmt.Errorf("%w: events is empty; list the Inform's event codes, e.g. [\"6 CONNECTION REQUEST\"]", ErrBadRequest)
	}
	if len(events) > MaxInformEvents {
		return fmt.Errorf("%w: %d events, at most %d", ErrBadRequest, len(events), MaxInformEvents)
	}
	for _, e := range events {
		if strings.TrimSpace(e) == "" || len(e) > MaxEventCodeBytes {
			return fmt.Errorf("%w: event code %q must be 1 to %d bytes", ErrBadRequest, e, MaxEventCodeBytes)
		}
	}
	return nil
}

// Inform records that the CPE of device id opened a session with the ACS
// with the given Inform event codes, at at. With "6 CONNECTION REQUEST"
// among them it confirms the device's pending wake, or its most recent one
// if that started within the confirm window and is not confirmed yet; the
// record gets confirmed_at and confirm_ms, and callers waiting for the
// confirmation return. It returns ErrNotFound for an unknown device.
func (w *Waker) Inform(id string, events []string, at time.Time) (Confirmation, error) {
	if err := checkInformEvents(events); err != nil {
		return Confirmation{}, err
	}
	if _, ok := w.cfg.Devices.Get(id); !ok {
		return Confirmation{}, fmt.Errorf("inform %s: %w", id, ErrNotFound)
	}
	c := Confirmation{Device: id}
	cr := false
	for _, e := range events {
		if strings.EqualFold(strings.TrimSpace(e), EventConnectionRequest) {
			cr = true
		}
	}
	if !cr {
		c.Reason = "the Inform has no \"" + EventConnectionRequest + "\" event: it was not caused by a connection request"
		return c, nil
	}
	// The pending wake, if one runs; else the most recent record.
	if wid, start, ok := w.calls.confirmPending(id, at); ok {
		c.Confirmed, c.WakeID, c.ConfirmMS = true, wid, ms(at.Sub(start))
		c.Reason = "confirmed the wake still in progress; its record will carry the confirmation"
		w.cfg.Logger.Debug("inform", "device", id, "confirmed", true, "pending", true)
		return c, nil
	}
	var rec registry.WakeRecord
	found := false
	w.cfg.Devices.UpdateLive(id, func(l *registry.Live) {
		if len(l.Wakes) == 0 {
			return
		}
		last := &l.Wakes[len(l.Wakes)-1]
		if last.ConfirmedAt != nil || at.Sub(last.At) > w.cfg.ConfirmWindow || last.At.After(at.Add(time.Second)) {
			return
		}
		t := at.UTC()
		last.ConfirmedAt = &t
		last.ConfirmMS = ms(at.Sub(last.At))
		rec, found = *last, true
	})
	if found {
		c.Confirmed, c.Wake, c.WakeID, c.ConfirmMS = true, &rec, rec.ID, rec.ConfirmMS
		w.calls.confirm(id, rec.ID, at)
		w.noteConfirmed(id, rec)
	} else {
		c.Reason = "no unconfirmed wake of this device in the last " + w.cfg.ConfirmWindow.String()
	}
	w.cfg.Logger.Debug("inform", "device", id, "confirmed", c.Confirmed, "reason", c.Reason)
	return c, nil
}

// noteConfirmed counts a confirmation and tells the observer.
func (w *Waker) noteConfirmed(id string, rec registry.WakeRecord) {
	w.confirmed.WithLabelValues(rec.Transport).Observe(rec.ConfirmMS / 1000)
	if w.cfg.Observer != nil {
		w.cfg.Observer.Confirmed(id, Result{ID: rec.ID, Status: Confirmed, Transport: registry.Transport(rec.Transport),
			DurationMS: rec.DurationMS, ConfirmMS: rec.ConfirmMS})
	}
}

// awaitConfirm waits, within ctx, for the Inform confirming cl, and
// updates res accordingly.
func (w *Waker) awaitConfirm(ctx context.Context, id string, cl *call, res *Result) {
	unwait := w.calls.wait(id, cl)
	defer unwait()
	select {
	case <-cl.confirmed:
		res.Status = Confirmed
		res.ConfirmMS = ms(cl.confirmAt.Sub(cl.start))
	case <-ctx.Done():
		res.ConfirmTimedOut = true
	}
}
