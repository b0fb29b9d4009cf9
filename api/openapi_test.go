package api

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/wake"
)

type spec struct {
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		Schemas map[string]map[string]any `yaml:"schemas"`
	} `yaml:"components"`
}

func loadSpec(t *testing.T) spec {
	t.Helper()
	var s spec
	if err := yaml.Unmarshal(OpenAPI(), &s); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return s
}

// TestOpenAPIRoutes: every route the server serves is in the document with
// the same methods, and the document lists nothing the server lacks.
func TestOpenAPIRoutes(t *testing.T) {
	sp := loadSpec(t)
	s := &Server{cfg: Config{Gatherer: dummyGatherer{}}}
	served := map[string][]string{}
	for _, rt := range s.routes() {
		for m := range rt.methods {
			served[rt.pattern] = append(served[rt.pattern], strings.ToLower(m))
		}
	}
	for p, ms := range served {
		var doc []string
		for k := range sp.Paths[p] {
			if k != "parameters" {
				doc = append(doc, k)
			}
		}
		sort.Strings(ms)
		sort.Strings(doc)
		if !slices.Equal(ms, doc) {
			t.Errorf("%s: served %v, documented %v", p, ms, doc)
		}
	}
	for p := range sp.Paths {
		if _, ok := served[p]; !ok {
			t.Errorf("documented %s is not served", p)
		}
	}
}

// TestOpenAPISchemas: the schemas name exactly the JSON fields of the Go
// types the API encodes and decodes.
func TestOpenAPISchemas(t *testing.T) {
	sp := loadSpec(t)
	inputFields := []string{"id"}
	for k := range deviceFields {
		inputFields = append(inputFields, k)
	}
	for name, want := range map[string][]string{
		"Device":         jsonFields(Device{}),
		"State":          jsonFields(State{}),
		"TransportState": jsonFields(TransportState{}),
		"UDPState":       jsonFields(UDPState{}),
		"Binding":        jsonFields(Binding{}),
		"WakeRecord":     jsonFields(registry.WakeRecord{}),
		"DeviceList":     jsonFields(DeviceList{}),
		"WakeRequest":    jsonFields(WakeRequest{}),
		"InformRequest":  jsonFields(InformRequest{}),
		"CampaignSpec":   jsonFields(CampaignSpec{}),
		"Campaign":       jsonFields(Campaign{}),
		"CampaignList":   jsonFields(CampaignList{}),
		"InformResult":   jsonFields(InformResult{}),
		"WakeResult":     jsonFields(wake.Result{}),
		"Attempt":        jsonFields(wake.Attempt{}),
		"ErrorDetail":    jsonFields(ErrorDetail{}),
		"DeviceInput":    inputFields,
	} {
		var got []string
		schema := sp.Components.Schemas[name]
		if name == "ErrorDetail" {
			schema = sp.Components.Schemas["Error"]["properties"].(map[string]any)["error"].(map[string]any)
		}
		for k := range schema["properties"].(map[string]any) {
			got = append(got, k)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("schema %s has %v, Go type has %v", name, got, want)
		}
	}
	enum := sp.Components.Schemas["Error"]["properties"].(map[string]any)["error"].(map[string]any)["properties"].(map[string]any)["code"].(map[string]any)["enum"].([]any)
	var codes []string
	for _, c := range enum {
		codes = append(codes, c.(string))
	}
	want := slices.Clone(errorCodes)
	sort.Strings(codes)
	sort.Strings(want)
	if !slices.Equal(codes, want) {
		t.Errorf("error code enum %v, code has %v", codes, want)
	}
}

func jsonFields(v any) []string {
	var out []string
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// TestMain runs every test, then validates every answer they received
// against the response schema the document gives for its route and status:
// the bad-input tables included, so the document cannot omit an error.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && !testing.Short() {
		var s spec
		if err := yaml.Unmarshal(OpenAPI(), &s); err != nil {
			fmt.Println("openapi.yaml:", err)
			os.Exit(1)
		}
		errs := checkAnswers(s, answers.list)
		for _, e := range errs {
			fmt.Println("OpenAPI conformance:", e)
		}
		if len(errs) > 0 {
			code = 1
		} else {
			fmt.Printf("OpenAPI conformance: %d answers match the document\n", len(answers.list))
		}
	}
	os.Exit(code)
}

// TestOpenAPIAnswers makes sure every route and outcome is exercised at
// least once (TestMain checks the answers).
func TestOpenAPIAnswers(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v1/devices/a", goodDevice)
	e.do("PUT", "/v1/devices/a", goodDevice)
	e.do("PUT", "/v1/devices/b", `{"stun_username":"stun-0001"}`)
	e.do("PATCH", "/v1/devices/a", `{"username":null}`)
	e.do("GET", "/v1/devices/a", "")
	e.do("GET", "/v1/devices?limit=1", "")
	e.do("POST", "/v1/devices/a/connection-request", `{"transports":["http","udp"]}`)
	e.do("GET", "/v1/devices/a", "")
	e.do("DELETE", "/v1/devices/a", "")
	e.do("GET", "/healthz", "")
	e.do("GET", "/readyz", "")
	e.do("GET", "/v1/openapi.yaml", "")
	if errs := checkAnswers(loadSpec(t), []exchange{{method: "GET", pattern: "/v1/devices", status: 299, body: []byte("{}")}}); len(errs) != 1 {
		t.Fatalf("an undocumented status passed the check: %v", errs)
	}
}

func checkAnswers(sp spec, list []exchange) []error {
	var errs []error
	for _, x := range list {
		op, ok := sp.Paths[x.pattern][strings.ToLower(x.method)].(map[string]any)
		if !ok {
			if x.status == 404 || x.status == 405 { // unknown path or method: documented as such in the description
				continue
			}
			errs = append(errs, fmt.Errorf("%s %s: not documented (%d %s)", x.method, x.pattern, x.status, x.body))
			continue
		}
		responses := op["responses"].(map[string]any)
		resp, ok := responses[strconv.Itoa(x.status)].(map[string]any)
		if !ok && x.status >= 400 {
			resp, ok = responses["default"].(map[string]any)
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s %s answered %d, which is not documented", x.method, x.pattern, x.status))
			continue
		}
		if c, ok := resp["content"].(map[string]any); ok && c["text/event-stream"] != nil {
			continue // a stream, not a JSON document
		}
		schema := responseSchema(sp, resp)
		if schema == nil {
			if len(x.body) != 0 && !strings.HasPrefix(x.pattern, "/v1/openapi") {
				errs = append(errs, fmt.Errorf("%s %s %d: body %q where none is documented", x.method, x.pattern, x.status, x.body))
			}
			continue
		}
		var v any
		if err := json.Unmarshal(x.body, &v); err != nil {
			errs = append(errs, fmt.Errorf("%s %s %d: not JSON: %q", x.method, x.pattern, x.status, x.body))
			continue
		}
		if err := validate(sp, schema, v, "$"); err != nil {
			errs = append(errs, fmt.Errorf("%s %s %d: %v\n%s", x.method, x.pattern, x.status, err, x.body))
		}
	}
	return errs
}

func resolve(sp spec, s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		s = sp.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
	}
}

func responseSchema(sp spec, resp map[string]any) map[string]any {
	if ref, ok := resp["$ref"].(string); ok && ref == "#/components/responses/Error" {
		return sp.Components.Schemas["Error"]
	}
	content, ok := resp["content"].(map[string]any)
	if !ok {
		return nil
	}
	js, ok := content["application/json"].(map[string]any)
	if !ok {
		return nil
	}
	return resolve(sp, js["schema"].(map[string]any))
}

// validate checks v against the subset of JSON Schema the document uses.
func validate(sp spec, s map[string]any, v any, at string) error {
	s = resolve(sp, s)
	if v == nil {
		if s["nullable"] == true {
			return nil
		}
		return fmt.Errorf("%s: null", at)
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s: %v not in %v", at, v, enum)
	}
	switch s["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", at)
		}
		props, _ := s["properties"].(map[string]any)
		for _, r := range asList(s["required"]) {
			if _, ok := obj[r]; !ok {
				return fmt.Errorf("%s: required %q missing", at, r)
			}
		}
		extra, _ := s["additionalProperties"].(map[string]any) // a schema for any other key
		for k, val := range obj {
			ps, ok := props[k].(map[string]any)
			if !ok && extra != nil {
				ps, ok = extra, true
			}
			if !ok {
				return fmt.Errorf("%s: undocumented field %q", at, k)
			}
			if err := validate(sp, ps, val, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: not an array", at)
		}
		for i, it := range arr {
			if err := validate(sp, s["items"].(map[string]any), it, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s: not a string", at)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: not a boolean", at)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			return fmt.Errorf("%s: not a number", at)
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			return fmt.Errorf("%s: not an integer", at)
		}
	}
	return nil
}

func asList(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, x.(string))
	}
	return out
}

type dummyGatherer struct{}

func (dummyGatherer) Gather() ([]*dto.MetricFamily, error) { return nil, nil }
