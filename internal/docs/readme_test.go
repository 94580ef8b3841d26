package docs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/ambientlab/labrun-operator/internal/plugin"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

const root = "../.."

// command is one command of a README shell block: its words, the line it starts on, and the comment lines right
// after it (what the README shows it prints, e.g. `# {"observed":"error",...}`).
type command struct {
	words  []string
	line   int
	output []string
	// comment is the comment on the command's own (last) line, e.g. `# NAMESPACE, NAME, …`.
	comment string
}

func (c command) String() string { return strings.Join(c.words, " ") }

// readmeCommands are the commands of the README's sh/bash blocks: continuation lines joined, comments dropped,
// `a && b` split.
func readmeCommands(t *testing.T) []command {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []command
	inBlock, pending, start := false, "", 0
	for i, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !inBlock && (trimmed == "```sh" || trimmed == "```bash"):
			inBlock = true
			continue
		case inBlock && trimmed == "```":
			inBlock = false
			continue
		case !inBlock:
			continue
		}
		if rest, ok := strings.CutPrefix(trimmed, "# "); ok && pending == "" && len(out) > 0 && out[len(out)-1].line+len(out[len(out)-1].output) == i {
			out[len(out)-1].output = append(out[len(out)-1].output, rest)
			continue
		}
		if pending == "" {
			start = i + 1
		}
		code := stripComment(line)
		comment := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line[len(code):]), "#"))
		if strings.HasSuffix(strings.TrimSpace(code), `\`) {
			pending += strings.TrimSuffix(strings.TrimSpace(code), `\`) + " "
			continue
		}
		code, pending = pending+code, ""
		for _, part := range strings.Split(code, "&&") {
			if words := split(part); len(words) > 0 {
				out = append(out, command{words: words, line: start, comment: comment})
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the README has no shell commands")
	}
	return out
}

// stripComment drops a shell comment: a # at the start of a word, outside quotes.
func stripComment(line string) string {
	quote := byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i]
		}
	}
	return line
}

// split cuts a command into words as a shell would for these simple lines: by spaces, quotes removed.
func split(s string) []string {
	var out []string
	var cur strings.Builder
	quote, in := byte(0), false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// TestReadmeCommandsNameWhatExists checks every README command against the repository: make targets in the
// Makefile, files and directories it names, the chart values `helm --set` sets, and `kubectl labrun`
// subcommands and flags in the plugin's command tree.
func TestReadmeCommandsNameWhatExists(t *testing.T) {
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, c := range readmeCommands(t) {
		w := c.words
		t.Run(strings.Join(w[:min(len(w), 3)], "_"), func(t *testing.T) {
			switch {
			case w[0] == "make":
				checked++
				for _, target := range w[1:] {
					if strings.Contains(target, "=") {
						variable, _, _ := strings.Cut(target, "=")
						if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(variable) + `\s*\??=`).Match(makefile) {
							t.Errorf("README line %d: `%s`: the Makefile has no variable %s", c.line, c, variable)
						}
						continue
					}
					if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:`).Match(makefile) {
						t.Errorf("README line %d: `%s`: the Makefile has no target %s", c.line, c, target)
					}
				}
			case len(w) > 1 && w[0] == "kubectl" && w[1] == "labrun":
				checked++
				checkPlugin(t, c)
			case w[0] == "kubectl" || w[0] == "helm":
				checked++
				checkPaths(t, c)
				if w[0] == "helm" {
					checkHelmValues(t, c)
				}
			case strings.HasPrefix(w[0], "hack/"):
				checked++
				if fi, err := os.Stat(filepath.Join(root, w[0])); err != nil || fi.Mode()&0o111 == 0 {
					t.Errorf("README line %d: `%s`: %s is not an executable file of the repository", c.line, c, w[0])
				}
			}
		})
	}
	if checked < 20 {
		t.Errorf("checked only %d README commands: is the README's shell still in ```sh blocks?", checked)
	}
}

// checkPaths: the files and directories a kubectl or helm command names (-f, -k, or a chart path) exist.
func checkPaths(t *testing.T, c command) {
	for i, w := range c.words {
		path := ""
		switch {
		case (w == "-f" || w == "-k") && i+1 < len(c.words):
			path = c.words[i+1]
		case strings.HasPrefix(w, "charts/") || strings.HasPrefix(w, "config/"):
			path = w
		}
		if path == "" || strings.Contains(path, "://") || path == "-" {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, path)); err != nil {
			t.Errorf("README line %d: `%s`: %s does not exist", c.line, c, path)
		}
	}
}

// checkHelmValues: every --set key is a value of the chart.
func checkHelmValues(t *testing.T, c command) {
	raw, err := os.ReadFile(filepath.Join(root, "charts", "labrun-operator", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	for i, w := range c.words {
		if w != "--set" || i+1 >= len(c.words) {
			continue
		}
		key, _, _ := strings.Cut(c.words[i+1], "=")
		var at any = values
		for _, part := range strings.Split(key, ".") {
			m, ok := at.(map[string]any)
			if !ok {
				at = nil
				break
			}
			at, ok = m[part]
			if !ok {
				at = nil
				break
			}
		}
		if at == nil {
			t.Errorf("README line %d: `%s`: the chart has no value %s", c.line, c, key)
		}
	}
}

// checkPlugin: the subcommand exists in the plugin's command tree and takes the flags given.
func checkPlugin(t *testing.T, c command) {
	var out bytes.Buffer
	root := plugin.NewRootCommand(genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &out})
	cmd, rest, err := root.Find(c.words[2:])
	if err != nil || cmd == root {
		t.Errorf("README line %d: `%s`: the plugin has no such subcommand (%v)", c.line, c, err)
		return
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Errorf("README line %d: `%s`: %v", c.line, c, err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		t.Errorf("README line %d: `%s`: %v", c.line, c, err)
	}
}

// TestReadmeProbeCommandsRun runs the README's `go run . probe` commands in-process, as written (they need no
// cluster), and checks that what they print carries every "key":value the README shows under them. Values that
// differ from run to run (times, durations, error texts) are not shown as such in the README, or are elided.
func TestReadmeProbeCommandsRun(t *testing.T) {
	ran := 0
	for _, c := range readmeCommands(t) {
		w := c.words
		if len(w) < 4 || w[0] != "go" || w[1] != "run" || w[2] != "." || w[3] != "probe" {
			continue
		}
		ran++
		if len(c.output) == 0 {
			t.Errorf("README line %d: `%s` shows no output under it", c.line, c)
			continue
		}
		var out bytes.Buffer
		probe.Main(w[4:], &out)
		printed := strings.TrimSpace(out.String())
		for _, pair := range documentedPairs(c.output[0]) {
			if !strings.Contains(printed, pair) {
				t.Errorf("README line %d: `%s` printed\n%s\nwithout %s, which the README shows", c.line, c, printed, pair)
			}
		}
	}
	if ran == 0 {
		t.Error("the README has no `go run . probe` command")
	}
}

// varying are the keys whose values change from run to run.
var varying = map[string]bool{"t": true, "startTime": true, "endTime": true, "settleSeconds": true, "error": true,
	"firstError": true, "lastError": true}

// documentedPairs are the "key":value pairs of a JSON line the README shows, but for the varying keys.
func documentedPairs(line string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`"([A-Za-z]+)":("[^"]*"|[-0-9.]+|true|false)`).FindAllStringSubmatch(line, -1) {
		if !varying[m[1]] {
			out = append(out, m[0])
		}
	}
	return out
}
