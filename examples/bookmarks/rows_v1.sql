-- Sample rows for version 1 (docs/guide.md): sqlite3 /tmp/bookmarks.db < rows_v1.sql
PRAGMA foreign_keys = ON;
INSERT INTO users (id, email, name) VALUES (1, 'ann@example.org', 'Ann'), (2, 'Bob@Example.org', 'Bob Ø');
INSERT INTO folders (id, user_id, parent_id, name) VALUES (1, 1, NULL, 'Reading'), (2, 1, 1, 'Databases'),
    (3, 1, 2, 'SQLite'), (4, 2, NULL, 'Recipes');
INSERT INTO bookmarks (id, user_id, folder_id, url, title, description, added_at) VALUES
    (1, 1, 3, 'https://sqlite.org/fts5.html', 'SQLite FTS5 Extension', 'full-text search', '2026-10-01 08:00:00'),
    (2, 1, 3, 'https://sqlite.org/lang_altertable.html', 'ALTER TABLE', 'the twelve-step rebuild', '2026-10-02 08:00:00'),
    (3, 1, NULL, 'https://example.org/', 'Example Domain', '', '2026-10-03 08:00:00'),
    (4, 2, 4, 'https://example.com/bread', 'Sourdough bread', 'starter at 8pm; crème fraîche', '2026-10-04 08:00:00');
INSERT INTO bookmarks (id, user_id, url) VALUES (5, 2, 'http://example.net/plain');
INSERT INTO tags (id, user_id, name) VALUES (1, 1, 'sqlite'), (2, 1, 'later'), (3, 2, 'food');
INSERT INTO bookmark_tags (bookmark_id, tag_id, tagged_at) VALUES (1, 1, '2026-10-05 09:00:00'),
    (2, 1, '2026-10-05 09:00:01'), (2, 2, '2026-10-05 09:00:02'), (4, 3, '2026-10-05 09:00:03');
