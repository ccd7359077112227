//! Integration tests of the REST API against real servers on SQLite and PostgreSQL.
