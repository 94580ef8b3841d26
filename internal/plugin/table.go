package plugin

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/report"
)

// The step table: one row per step, the columns `status` prints and `run` prints live.
var tableHeader = []string{"LAB", "STEP", "EXPECTED", "OBSERVED", "VERDICT", "SETTLE"}

func stepCells(st labsv1.StepResult) []string {
	return []string{string(st.Lab), st.Name, st.Expected, orDash(st.Observed), string(st.Verdict), orDash(report.Settle(st))}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeStepTable prints the whole table aligned, then what each node saw for the steps that failed. With a width
// (a terminal's; 0: none, as for a pipe or --wide) the EXPECTED and OBSERVED cells are cut short, ending in "…",
// so that every row fits.
func writeStepTable(w io.Writer, steps []labsv1.StepResult, width int) error {
	rows := make([][]string, 0, len(steps)+1)
	rows = append(rows, tableHeader)
	for _, st := range steps {
		rows = append(rows, stepCells(st))
	}
	if width > 0 {
		fitRows(rows, width)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeCoverage(w, steps)
}

// The columns that give way when a table is wider than the terminal: EXPECTED and OBSERVED.
const expectedColumn, observedColumn = 2, 3

// minCutWidth is as narrow as a cut column gets, whatever the terminal.
const minCutWidth = 12

// fitRows cuts the EXPECTED and OBSERVED cells so that the rows, with the two-space padding between columns, fit
// in width; the other columns are kept whole.
func fitRows(rows [][]string, width int) {
	widths := make([]int, len(tableHeader))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	total := 2 * (len(widths) - 1)
	for _, w := range widths {
		total += w
	}
	for total > width {
		i := expectedColumn
		if widths[observedColumn] > widths[expectedColumn] {
			i = observedColumn
		}
		if widths[i] <= minCutWidth {
			break
		}
		widths[i]--
		total--
	}
	for _, row := range rows[1:] {
		for _, i := range []int{expectedColumn, observedColumn} {
			row[i] = cut(row[i], widths[i])
		}
	}
}

// cut shortens s to n runes, the last one "…".
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// writeCoverage lists, under the table, the per-node results of failing steps: which node let what through.
func writeCoverage(w io.Writer, steps []labsv1.StepResult) error {
	for _, st := range steps {
		if !report.Failing(st.Verdict) {
			continue
		}
		if st.Message != "" {
			if _, err := fmt.Fprintf(w, "%s/%s: %s\n", st.Lab, st.Name, st.Message); err != nil {
				return err
			}
		}
		for _, n := range st.Coverage {
			if _, err := fmt.Fprintf(w, "  %s/%s %s\n", st.Lab, st.Name, report.CoverageLine(n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// liveTable prints rows one at a time as steps change, aligned without buffering: column widths come from the
// planned steps, which status lists from the start.
type liveTable struct {
	w       io.Writer
	widths  []int
	printed map[string]string // step key → the row last printed
	header  bool
}

func newLiveTable(w io.Writer) *liveTable { return &liveTable{w: w, printed: map[string]string{}} }

// update prints the header once and a row for each step whose row changed since it was last printed.
func (t *liveTable) update(steps []labsv1.StepResult) {
	if len(steps) == 0 {
		return
	}
	if !t.header {
		t.widths = columnWidths(steps)
		fmt.Fprintln(t.w, t.format(tableHeader))
		t.header = true
	}
	for _, st := range steps {
		key := string(st.Lab) + "/" + st.Name
		row := t.format(stepCells(st))
		if t.printed[key] == row {
			continue
		}
		t.printed[key] = row
		fmt.Fprintln(t.w, row)
	}
}

func (t *liveTable) format(cells []string) string {
	var b strings.Builder
	for i, c := range cells {
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		fmt.Fprintf(&b, "%-*s  ", t.widths[i], c)
	}
	return strings.TrimRight(b.String(), " ")
}

// maxLiveWidth caps the expected and observed columns of the live table.
const maxLiveWidth = 60

// columnWidths fit the header and the planned steps; observed gets at least the width of expected, as it is
// usually said in the same words.
func columnWidths(steps []labsv1.StepResult) []int {
	widths := make([]int, len(tableHeader))
	for i, h := range tableHeader {
		widths[i] = len(h)
	}
	for _, st := range steps {
		for i, c := range stepCells(st) {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	widths[3] = max(widths[3], widths[2])
	widths[4] = max(widths[4], len(labsv1.VerdictSkipped))
	// A long expectation (hbone's is 150 characters) would push every row off the screen: longer cells overflow
	// their column instead, and `status` prints the table aligned in full.
	widths[2], widths[3] = min(widths[2], maxLiveWidth), min(widths[3], maxLiveWidth)
	return widths
}
