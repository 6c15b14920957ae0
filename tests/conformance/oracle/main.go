// cdi-oracle: the reference CDI library's verdict on spec files, for the differential conformance test.
//
// It loads each file exactly as the runtimes' spec cache does (pkg/cdi ReadSpec: read, ParseSpec with
// sigs.k8s.io/yaml UnmarshalStrict, then the library's version, name, device and edit checks) and
// prints one JSON object per file: whether it loaded, the error or panic, the spec as the library
// decoded it (re-encoded as JSON) and the minimum cdiVersion the library computes for it.
//
// Usage: cdi-oracle -version | cdi-oracle < paths (one path per line, one JSON line out per path).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	specs "tags.cncf.io/container-device-interface/specs-go"
)

// library names the packaged library the binary was built from (set with -ldflags -X).
var library = "unknown"

type verdict struct {
	Path       string          `json:"path"`
	Loaded     bool            `json:"loaded"`
	Error      *string         `json:"error"`
	Panic      *string         `json:"panic"`
	Parsed     json.RawMessage `json:"parsed"`
	ParseError *string         `json:"parseError"`
	MinVersion *string         `json:"minVersion"`
}

func text(s string) *string { return &s }

// readSpec is the cache's call; a panic inside the library is reported, not fatal.
func readSpec(path string) (loaded bool, err error, panicked *string) {
	defer func() {
		if r := recover(); r != nil {
			loaded, err, panicked = false, nil, text(fmt.Sprint(r))
		}
	}()
	spec, err := cdi.ReadSpec(path, 0)
	return spec != nil && err == nil, err, nil
}

// parse is ParseSpec alone: what the library decodes, and the minimum version it computes for that.
func parse(path string, v *verdict) {
	defer func() {
		if r := recover(); r != nil {
			v.ParseError = text(fmt.Sprintf("panic: %v", r))
		}
	}()
	data, err := os.ReadFile(path)
	if err != nil {
		v.ParseError = text(err.Error())
		return
	}
	raw, err := cdi.ParseSpec(data)
	if err != nil {
		v.ParseError = text(err.Error())
		return
	}
	if raw == nil {
		v.ParseError = text("no Spec data")
		return
	}
	if encoded, err := json.Marshal(raw); err == nil {
		v.Parsed = encoded
	}
	if minimum, err := cdi.MinimumRequiredVersion(raw); err == nil {
		v.MinVersion = text(minimum)
	}
}

func judge(path string) verdict {
	v := verdict{Path: path, Parsed: json.RawMessage("null")}
	loaded, err, panicked := readSpec(path)
	v.Loaded, v.Panic = loaded, panicked
	if err != nil {
		v.Error = text(err.Error())
	}
	parse(path, &v)
	return v
}

func main() {
	showVersion := flag.Bool("version", false, "print the library version and the newest cdiVersion it knows")
	flag.Parse()
	out := json.NewEncoder(os.Stdout)
	if *showVersion {
		_ = out.Encode(map[string]string{"library": library, "currentVersion": specs.CurrentVersion})
		return
	}
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		if path := lines.Text(); path != "" {
			if err := out.Encode(judge(path)); err != nil {
				os.Exit(1)
			}
		}
	}
}
