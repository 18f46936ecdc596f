-- What the app does at version 2 (docs/guide.md): it records visits, and a bookmark is deleted. Its visit 3
-- stays behind: visits has no foreign key yet. sqlite3 /tmp/bookmarks.db < rows_v2.sql
PRAGMA foreign_keys = ON;
INSERT INTO visits (id, bookmark_id, visited_at, referrer) VALUES (1, 1, '2026-11-01 09:00:00', 'https://news.example/'),
    (2, 1, '2026-11-02 10:00:00', NULL), (3, 3, '2026-11-03 11:00:00', NULL),
    (4, 4, '2026-11-04 12:00:00', 'https://mail.example/'), (5, 5, '2026-11-05 13:00:00', NULL);
DELETE FROM bookmarks WHERE id = 3;
