"""Bookmarks, version 5: visits.bookmark_id gets its foreign key, ON DELETE CASCADE.

visits already holds rows, some of them of bookmarks deleted since (nothing stopped that). repair="delete"
says what to do with those: delete them (data loss: apply asks first, or takes --yes). Without repair= the
migration would be refused, naming the rows. The new key gets the index ON DELETE CASCADE looks up.

The example project of docs/guide.md (each version is a complete declaration; pyproject.toml names
the current one). From version 4: `schemagen plan --db /tmp/bookmarks.db --schema v5.py`, then apply.
"""
from schema_dsl.model import (Check, Column, Expr, Index, PrimaryKey, Pragma, Schema, Table, Trigger, Unique, View,
                              VirtualTable, fk)

NOW = Expr("datetime('now')")  # SQLite's text 'YYYY-MM-DD HH:MM:SS', in UTC

users = Table("users", comment="People who keep bookmarks.", columns=[
    Column("id", "INTEGER", comment="Row id."),
    Column("email", "TEXT", not_null=True, unique=True, collate="NOCASE", comment="Login; unique whatever its case."),
    Column("name", "TEXT", not_null=True, comment="Shown in the app."),
    Column("created_at", "TEXT", not_null=True, default=NOW, comment="When the account was made (UTC)."),
], primary_key=PrimaryKey(["id"]))

folders = Table("folders", comment="A user's folders; a folder may sit inside another one.", columns=[
    Column("id", "INTEGER", comment="Row id."),
    Column("user_id", "INTEGER", not_null=True, comment="The owner."),
    Column("parent_id", "INTEGER", comment="The folder it sits in; NULL at the top."),
    Column("name", "TEXT", not_null=True, comment="Shown in the tree."),
], primary_key=PrimaryKey(["id"]),
    uniques=[Unique(["user_id", "parent_id", "name"])],
    foreign_keys=[fk("user_id", "users", "id", on_delete="CASCADE"),
                  fk("parent_id", "folders", "id", on_delete="CASCADE")])  # self-referencing: a tree

bookmarks = Table("bookmarks", comment="A saved page.", columns=[
    Column("id", "INTEGER", comment="Row id (also the full-text index's rowid)."),
    Column("user_id", "INTEGER", not_null=True, comment="The owner."),
    Column("folder_id", "INTEGER", comment="Its folder; NULL: unfiled."),
    Column("url", "TEXT", not_null=True, comment="The page's address."),
    Column("title", "TEXT", not_null=True, default="", comment="The page's title."),
    Column("description", "TEXT", not_null=True, default="", comment="The user's note."),
    Column("added_at", "TEXT", not_null=True, default=NOW, comment="When it was saved (UTC)."),
    Column("archived", "INTEGER", not_null=True, default=0, comment="1: kept, but out of the list."),
], primary_key=PrimaryKey(["id"]),
    uniques=[Unique(["user_id", "url"])],
    checks=[Check("url LIKE 'http://%' OR url LIKE 'https://%'", name="bookmarks_url_is_web"),
            Check("archived IN (0, 1)", name="bookmarks_archived_is_0_or_1")],
    foreign_keys=[fk("user_id", "users", "id", on_delete="CASCADE"),
                  fk("folder_id", "folders", "id", on_delete="SET NULL")])

tags = Table("tags", comment="A user's tags.", columns=[
    Column("id", "INTEGER", comment="Row id."),
    Column("user_id", "INTEGER", not_null=True, comment="The owner."),
    Column("label", "TEXT", not_null=True, renamed_from="name", comment="The tag as shown (was name)."),
], primary_key=PrimaryKey(["id"]),
    uniques=[Unique(["user_id", "label"])],
    foreign_keys=[fk("user_id", "users", "id", on_delete="CASCADE")])

bookmark_tags = Table("bookmark_tags", comment="Which bookmark carries which tag.", columns=[
    Column("bookmark_id", "INTEGER", not_null=True, comment="The bookmark."),
    Column("tag_id", "INTEGER", not_null=True, comment="The tag."),
    Column("tagged_at", "TEXT", not_null=True, default=NOW, comment="When the tag was put on (UTC)."),
], primary_key=PrimaryKey(["bookmark_id", "tag_id"]),  # a composite key: one row per pair
    without_rowid=True,
    foreign_keys=[fk("bookmark_id", "bookmarks", "id", on_delete="CASCADE"),
                  fk("tag_id", "tags", "id", on_delete="CASCADE")])

visits = Table("visits", comment="Each time a bookmark was opened.", columns=[
    Column("id", "INTEGER", comment="Row id."),
    Column("bookmark_id", "INTEGER", not_null=True, comment="The bookmark opened."),
    Column("visited_at", "TEXT", not_null=True, default=NOW, comment="When (UTC)."),
    Column("referrer", "TEXT", comment="The page it was opened from, if any."),
], primary_key=PrimaryKey(["id"]),
    foreign_keys=[fk("bookmark_id", "bookmarks", "id", on_delete="CASCADE", repair="delete")])

INDEXES = [
    Index("idx_bookmarks_user_added", "bookmarks", ["user_id", "added_at DESC"],
          serves=["SELECT * FROM bookmarks WHERE user_id = ? ORDER BY added_at DESC LIMIT 50"],
          comment="A user's newest bookmarks first."),
    Index("idx_bookmarks_user_list", "bookmarks", ["user_id", "added_at DESC"], where="archived = 0",
          serves=["SELECT * FROM bookmarks WHERE user_id = ? AND archived = 0 ORDER BY added_at DESC LIMIT 50"],
          comment="A user's list: newest first, archived ones left out (a partial index)."),
    Index("idx_bookmarks_folder", "bookmarks", ["folder_id"],
          serves=["SELECT * FROM bookmarks WHERE folder_id = ?"],
          comment="A folder's bookmarks; also what ON DELETE SET NULL looks up."),
    Index("idx_folders_parent", "folders", ["parent_id"],
          serves=["SELECT * FROM folders WHERE parent_id = ?"],
          comment="A folder's subfolders; also what ON DELETE CASCADE looks up."),
    Index("idx_tags_user", "tags", ["user_id"],
          serves=["SELECT * FROM tags WHERE user_id = ?"],
          comment="A user's tags."),
    Index("idx_visits_bookmark", "visits", ["bookmark_id", "visited_at DESC"],
          serves=["SELECT visited_at FROM visits WHERE bookmark_id = ? ORDER BY visited_at DESC LIMIT 10"],
          comment="A bookmark's last visits; also what ON DELETE CASCADE looks up."),
    Index("idx_bookmark_tags_tag", "bookmark_tags", ["tag_id"],
          serves=["SELECT bookmark_id FROM bookmark_tags WHERE tag_id = ?"],
          comment="The bookmarks of one tag (the key starts with bookmark_id)."),
]

# Full-text search over bookmarks: an external-content FTS5 table (it stores only the index; the text stays in
# bookmarks) and the three triggers that keep it in step, as the FTS5 documentation (section 4.4.3) shows.
SEARCH = VirtualTable("bookmarks_fts", "fts5",
                      "title, description, url, content='bookmarks', content_rowid='id'",
                      comment="Full-text index of bookmarks (external content).")
SEARCH_TRIGGERS = [
    Trigger("bookmarks_fts_insert", "bookmarks", """CREATE TRIGGER bookmarks_fts_insert AFTER INSERT ON bookmarks BEGIN
    INSERT INTO bookmarks_fts (rowid, title, description, url) VALUES (new.id, new.title, new.description, new.url);
END""", comment="Index a new bookmark."),
    Trigger("bookmarks_fts_delete", "bookmarks", """CREATE TRIGGER bookmarks_fts_delete AFTER DELETE ON bookmarks BEGIN
    INSERT INTO bookmarks_fts (bookmarks_fts, rowid, title, description, url)
        VALUES ('delete', old.id, old.title, old.description, old.url);
END""", comment="Unindex a deleted bookmark."),
    Trigger("bookmarks_fts_update", "bookmarks", """CREATE TRIGGER bookmarks_fts_update AFTER UPDATE ON bookmarks BEGIN
    INSERT INTO bookmarks_fts (bookmarks_fts, rowid, title, description, url)
        VALUES ('delete', old.id, old.title, old.description, old.url);
    INSERT INTO bookmarks_fts (rowid, title, description, url) VALUES (new.id, new.title, new.description, new.url);
END""", comment="Reindex a changed bookmark."),
]
# A rule the keys cannot say: a bookmark's folder belongs to the bookmark's owner.
OWNER_CHECK = Trigger("bookmarks_folder_owner", "bookmarks", """CREATE TRIGGER bookmarks_folder_owner
BEFORE INSERT ON bookmarks
WHEN new.folder_id IS NOT NULL AND (SELECT user_id FROM folders WHERE id = new.folder_id) <> new.user_id
BEGIN
    SELECT RAISE(ABORT, 'bookmarks: the folder belongs to another user');
END""", comment="A bookmark goes only into its owner's folders.")

TAG_COUNTS = View("tag_counts", """CREATE VIEW tag_counts AS
SELECT tags.user_id, tags.label, count(bookmark_tags.bookmark_id) AS bookmarks
FROM tags LEFT JOIN bookmark_tags ON bookmark_tags.tag_id = tags.id
GROUP BY tags.id""", comment="Each tag with how many bookmarks carry it.")

SCHEMA = Schema(
    "bookmarks",
    tables=[users, folders, bookmarks, tags, bookmark_tags, visits],
    indexes=INDEXES,
    virtual_tables=[SEARCH],
    views=[TAG_COUNTS],
    triggers=[*SEARCH_TRIGGERS, OWNER_CHECK],
    pragmas=[Pragma("journal_mode", "WAL", persistent=True), Pragma("foreign_keys", "ON"),
             Pragma("busy_timeout", 5000)],
)
