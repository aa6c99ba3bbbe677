package psst_test

// A database/sql pool whose credentials follow a rotation: every new connection logs in with the
// password the Source holds now, and on a rotation the idle connections (logged in with the old
// password) are closed so that the pool reconnects with the new one. Connections in use finish
// their work and are closed when returned to the pool after SetConnMaxLifetime.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/psst-dev/psst/clients/go/psst"
	"github.com/psst-dev/psst/clients/go/psstv1"
)

// passwordConnector opens each connection with the Source's current password.
type passwordConnector struct {
	source *psst.Source
	ref    string
	driver driver.Driver
	dsn    func(password string) string
}

func (c *passwordConnector) Connect(context.Context) (driver.Conn, error) {
	s, err := c.source.Get(c.ref)
	if err != nil {
		return nil, err
	}
	return c.driver.Open(c.dsn(s.Text()))
}

func (c *passwordConnector) Driver() driver.Driver { return c.driver }

// retireOnRotation drops the pool's idle connections after each rotation, until the Source ends.
func retireOnRotation(db *sql.DB, source *psst.Source, maxIdle int) {
	for range source.Updated() {
		db.SetMaxIdleConns(0) // closes the idle connections now
		db.SetMaxIdleConns(maxIdle)
	}
}

// openPool is the whole hook: pgx's stdlib.GetDefaultDriver(), or any database/sql driver.
func openPool(source *psst.Source, ref string, drv driver.Driver) *sql.DB {
	db := sql.OpenDB(&passwordConnector{
		source: source,
		ref:    ref,
		driver: drv,
		dsn: func(password string) string {
			return "host=db.internal user=app password=" + password
		},
	})
	db.SetMaxIdleConns(4)
	db.SetConnMaxLifetime(10 * time.Minute) // connections in use at a rotation retire too
	go retireOnRotation(db, source, 4)
	return db
}

func ExampleSource_databaseSQL() {
	ctx := context.Background()
	client, err := psst.Dial(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	source, err := psst.NewSource(ctx, client, "sm:prod/db-password")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer source.Close()
	var drv driver.Driver // e.g. pgx's stdlib.GetDefaultDriver()
	db := openPool(source, "sm:prod/db-password", drv)
	defer db.Close()
}

// recordingDriver is a database/sql driver that records the DSN of each connection.
type recordingDriver struct {
	mu     sync.Mutex
	opened []string
	closed int
}

func (d *recordingDriver) Open(dsn string) (driver.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opened = append(d.opened, dsn)
	return &recordingConn{d: d}, nil
}

func (d *recordingDriver) state() ([]string, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.opened...), d.closed
}

type recordingConn struct{ d *recordingDriver }

func (c *recordingConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("unused") }
func (c *recordingConn) Begin() (driver.Tx, error)           { return nil, errors.New("unused") }
func (c *recordingConn) Close() error {
	c.d.mu.Lock()
	c.d.closed++
	c.d.mu.Unlock()
	return nil
}

func TestSQLPoolFollowsARotation(t *testing.T) {
	f, _, _, c := watchSetup(t)
	steps := make(chan []*psstv1.WatchEvent)
	f.handlers <- script(steps, nil, event("db", current, "1", ""))
	source := newSource(t, c, "db")
	drv := &recordingDriver{}
	db := openPool(source, "db", drv)
	defer db.Close()
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	steps <- []*psstv1.WatchEvent{event("db", newVer, "2", "1")}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, closed := drv.state(); closed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle connection with the old password was not closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	opened, _ := drv.state()
	want := []string{"host=db.internal user=app password=value-1", "host=db.internal user=app password=value-2"}
	if fmt.Sprint(opened) != fmt.Sprint(want) {
		t.Errorf("connections opened with %q, want %q", opened, want)
	}
}
