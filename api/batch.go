package api

import (
	"net/http"
	"time"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/wake"
)

// BatchWakeRequest is the body of POST /v1/connection-requests: wake
// these devices now, each as POST /v1/devices/{id}/connection-request
// with the same transports and timeout would.
type BatchWakeRequest struct {
	Devices    []string             `json:"devices"`
	Transports []registry.Transport `json:"transports,omitempty"`
	Strategy   wake.Strategy        `json:"strategy,omitempty"`
	Wait       wake.Wait            `json:"wait,omitempty"`
	TimeoutMS  int64                `json:"timeout_ms,omitempty"`
}

// BatchWakeItem is one device's outcome: the wake result's fields, or
// error when the wake could not run (the device is not registered).
type BatchWakeItem struct {
	Device string `json:"device"`
	*wake.Result
	Error *ErrorDetail `json:"error,omitempty"`
}

// BatchWakeResult answers a batch: one item per device, in the order
// asked, counts by status ("not_found" for unregistered devices), and the
// batch's duration.
type BatchWakeResult struct {
	Results    []BatchWakeItem `json:"results"`
	Counts     map[string]int  `json:"counts"`
	DurationMS float64         `json:"duration_ms"`
}

// batchBodyBytes caps a batch body: wake.MaxBatch ids of the longest
// length, quoted and comma-separated, with room for the rest.
const batchBodyBytes = wake.MaxBatch*(registry.MaxIDLen+3) + 4096

func (s *Server) batchWake(w http.ResponseWriter, r *http.Request) {
	var body BatchWakeRequest
	if aerr := s.readJSONMax(w, r, &body, false, batchBodyBytes); aerr != nil {
		writeError(w, aerr)
		return
	}
	switch n := len(body.Devices); {
	case n == 0:
		writeError(w, fieldErr("devices", "devices must list at least one device id"))
		return
	case n > wake.MaxBatch:
		writeError(w, fieldErr("devices", "devices lists %d ids; at most %d per request (use a campaign for more)", n, wake.MaxBatch))
		return
	}
	seen := make(map[string]struct{}, len(body.Devices))
	for _, id := range body.Devices {
		if aerr := checkDeviceID(id); aerr != nil {
			aerr.Field = "devices"
			aerr.Message = "devices: " + aerr.Message
			writeError(w, aerr)
			return
		}
		if _, dup := seen[id]; dup {
			writeError(w, fieldErr("devices", "devices lists %q twice", id))
			return
		}
		seen[id] = struct{}{}
	}
	req, aerr := s.wakeRequest(r, wakeOptions{body.Transports, body.Strategy, body.Wait, body.TimeoutMS})
	if aerr != nil {
		writeError(w, aerr)
		return
	}

	start := time.Now()
	out := BatchWakeResult{Results: make([]BatchWakeItem, len(body.Devices)), Counts: map[string]int{}}
	// Every done writes its own slot; the counts are summed afterwards.
	err := s.cfg.Waker.WakeEach(r.Context(), body.Devices, req, s.cfg.BatchConcurrency, func(i int, res wake.Result, err error) {
		id := body.Devices[i]
		item := BatchWakeItem{Device: id}
		if err != nil {
			e := toAPIError(err)
			item.Error = &e.ErrorDetail
		} else {
			item.Result = &res
		}
		out.Results[i] = item
	})
	if err != nil {
		s.fail(w, "batch wake", err)
		return
	}
	for _, it := range out.Results {
		switch {
		case it.Result != nil:
			out.Counts[string(it.Status)]++
		case it.Error != nil:
			out.Counts[it.Error.Code]++
		}
	}
	out.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	writeJSON(w, http.StatusOK, out)
}
