package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/crrelay/crrelay/campaign"
)

// Campaigns is what the API needs of the campaign manager.
type Campaigns interface {
	Start(ctx context.Context, s campaign.Spec) (campaign.Campaign, error)
	Get(id string) (campaign.Campaign, bool)
	List() []campaign.Campaign
	Cancel(id string) (campaign.Campaign, error)
}

// CampaignSpec is the body of POST /v1/campaigns.
type CampaignSpec = campaign.Spec

// Campaign is a campaign and its progress.
type Campaign = campaign.Campaign

// CampaignList answers GET /v1/campaigns, newest first.
type CampaignList struct {
	Campaigns []Campaign `json:"campaigns"`
}

// campaignBodyBytes caps a campaign body: a million device ids of about
// 24 bytes, quoted and comma-separated. Longer lists belong in a filter
// or in several campaigns.
const campaignBodyBytes = 32 << 20

func (s *Server) campaigns() (Campaigns, *apiError) {
	if s.cfg.Campaigns == nil {
		return nil, errf(http.StatusServiceUnavailable, CodeUnavailable, "campaigns are not enabled on this appliance")
	}
	return s.cfg.Campaigns, nil
}

func (s *Server) startCampaign(w http.ResponseWriter, r *http.Request) {
	cs, aerr := s.campaigns()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var spec CampaignSpec
	if aerr := s.readJSONMax(w, r, &spec, false, campaignBodyBytes); aerr != nil {
		writeError(w, aerr)
		return
	}
	c, err := cs.Start(r.Context(), spec)
	if err != nil {
		s.fail(w, "campaign start", campaignError(err))
		return
	}
	s.cfg.Logger.Info("audit: campaign started", "campaign", c.ID, "origin", s.origin(r), "devices", c.Total,
		"filter", spec.Filter, "rate_per_s", spec.RatePerS, "concurrency", c.Spec.Concurrency)
	w.Header().Set("Location", "/v1/campaigns/"+url.PathEscape(c.ID))
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) listCampaigns(w http.ResponseWriter, r *http.Request) {
	cs, aerr := s.campaigns()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	list := cs.List()
	if list == nil {
		list = []Campaign{}
	}
	writeJSON(w, http.StatusOK, CampaignList{Campaigns: list})
}

func (s *Server) getCampaign(w http.ResponseWriter, r *http.Request) {
	cs, aerr := s.campaigns()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	c, ok := cs.Get(r.PathValue("id"))
	if !ok {
		writeError(w, errf(http.StatusNotFound, CodeNotFound, "campaign not found"))
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) cancelCampaign(w http.ResponseWriter, r *http.Request) {
	cs, aerr := s.campaigns()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	c, err := cs.Cancel(r.PathValue("id"))
	if err != nil {
		s.fail(w, "campaign cancel", campaignError(err))
		return
	}
	s.cfg.Logger.Info("audit: campaign cancelled", "campaign", c.ID, "origin", s.origin(r), "done", c.Done, "pending", c.Pending)
	writeJSON(w, http.StatusOK, c)
}

// campaignError maps the campaign manager's errors to API errors.
func campaignError(err error) error {
	switch {
	case errors.Is(err, campaign.ErrBadSpec):
		return errf(http.StatusBadRequest, CodeInvalidArgument, "%v", err)
	case errors.Is(err, campaign.ErrTooMany):
		return errf(http.StatusTooManyRequests, CodeRateLimited, "%v; wait for one to end or cancel one", err)
	case errors.Is(err, campaign.ErrNotFound):
		return errf(http.StatusNotFound, CodeNotFound, "campaign not found")
	case errors.Is(err, campaign.ErrFinished):
		return errf(http.StatusConflict, CodeConflict, "the campaign has already ended; nothing to cancel")
	case errors.Is(err, campaign.ErrClosed):
		return errf(http.StatusServiceUnavailable, CodeUnavailable, "the appliance is shutting down")
	}
	return err
}
