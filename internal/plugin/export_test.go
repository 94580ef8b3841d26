package plugin

// WriteStepTable is exported for the tests of the table's layout.
var WriteStepTable = writeStepTable
