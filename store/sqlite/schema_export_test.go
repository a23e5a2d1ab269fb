package sqlite

// AddMigration appends a migration to version (the newest known plus one) running sql, and
// returns a function that removes it. Tests that call it must not run in parallel with others
// of the package that read the known version.
func AddMigration(version int, sql func(table string) string) (remove func()) {
	saved := migrations
	migrations = append(migrations[:len(migrations):len(migrations)], migration{version: version, sql: sql})
	return func() { migrations = saved }
}
