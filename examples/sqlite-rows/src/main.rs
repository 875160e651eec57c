//! `sqlite-rows DB [ROW...]`: opens (or creates) the SQLite database DB, inserts each ROW
//! into the table `rows`, and prints how many rows the table holds.

use rusqlite::Connection;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: sqlite-rows DB [ROW...]");
        std::process::exit(2);
    };
    let mut db = Connection::open(&path).unwrap_or_else(|e| fail("open", e));
    db.execute(
        "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
        (),
    )
    .unwrap_or_else(|e| fail("create table", e));
    let tx = db.transaction().unwrap_or_else(|e| fail("begin", e));
    for row in args {
        tx.execute("INSERT INTO rows (text) VALUES (?1)", [&row])
            .unwrap_or_else(|e| fail("insert", e));
    }
    tx.commit().unwrap_or_else(|e| fail("commit", e));
    let n: i64 = db
        .query_row("SELECT count(*) FROM rows", (), |r| r.get(0))
        .unwrap_or_else(|e| fail("count", e));
    println!("rows: {n}");
}

fn fail(what: &str, e: rusqlite::Error) -> ! {
    eprintln!("sqlite-rows: {what}: {e}");
    std::process::exit(1);
}
