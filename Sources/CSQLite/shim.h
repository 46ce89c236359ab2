#pragma once
#include <sqlite3.h>

/* sqlite3_config is variadic, which Swift cannot call: one wrapper per setting used. */

/* No memory statistics: keeping them takes a process-wide mutex on every allocation SQLite makes. */
static inline int leadwire_sqlite3_disable_memstatus(void) { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }
