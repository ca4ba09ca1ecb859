//! Search: the words of the messages of my chats, never others', newest first, in pages;
//! several languages and punctuation; nothing in a query is an operator; bad queries are
//! refused with a sentence; edits and deletes are followed by the index itself.

use chat_core::limits::{SEARCH_DEFAULT_PAGE, SEARCH_MAX_WORDS, SEARCH_QUERY_MAX_CHARS};
use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::{DeleteRequest, EditRequest, Message, SearchRequest, SearchResponse};
use tonic::Code;

use crate::helpers::*;

async fn search_on<T: Transport>(
    chat: &ChatClient<T>,
    token: &str,
    request: SearchRequest,
) -> Result<SearchResponse, tonic::Status> {
    within(chat.clone().search(authed(token, request)))
        .await
        .map(tonic::Response::into_inner)
}

fn query(text: &str) -> SearchRequest {
    SearchRequest {
        query: text.to_owned(),
        ..Default::default()
    }
}

/// The texts found for `text` in every chat of the caller, newest first (one page).
async fn found<T: Transport>(chat: &ChatClient<T>, token: &str, text: &str) -> Vec<String> {
    search_on(chat, token, query(text))
        .await
        .unwrap_or_else(|status| panic!("search {text:?}: {status:?}"))
        .messages
        .into_iter()
        .map(|message| message.text)
        .collect()
}

/// The parts of `field` at `offsets`, pairs of byte offsets.
fn marked<'a>(field: &'a str, offsets: &[u32]) -> Vec<&'a str> {
    offsets
        .chunks_exact(2)
        .map(|pair| &field[pair[0] as usize..pair[1] as usize])
        .collect()
}

/// Alice is in two chats, not in the third; each has a message about pineapples.
async fn only_my_chats_are_searched<T: Transport>(app: &TestApp, chat: ChatClient<T>) {
    let [alice, bob, carol] = signed_up_all(app, ["alice", "bob", "carol"]).await;
    let with_bob = new_chat(app, &alice, &["alice", "bob"]).await;
    let with_carol = new_chat(app, &alice, &["alice", "carol"]).await;
    let without_alice = new_chat(app, &bob, &["bob", "carol"]).await;
    let mut native = app.chat().await;
    let first = send_text(
        &mut native,
        &bob,
        &with_bob,
        "1",
        "Pineapple pizza tonight?",
    )
    .await;
    send_text(&mut native, &carol, &without_alice, "2", "pineapple secret").await;
    let second = send_text(
        &mut native,
        &carol,
        &with_carol,
        "3",
        "No pineapple, please.",
    )
    .await;
    send_text(&mut native, &alice, &with_bob, "4", "pine trees").await;

    let all = search_on(&chat, &alice, query("pineapple")).await.unwrap();
    assert_eq!(
        all.messages,
        [second.clone(), first.clone()],
        "newest first, mine only"
    );
    assert!(!all.has_more);
    assert_eq!(all.next_page_token, "");
    // Who is in each chat the results come from, in the order the results first name them:
    // what a client needs to name a chat its paged List has not loaded.
    let members: Vec<(&str, Vec<&str>)> = all
        .chats
        .iter()
        .map(|chat| {
            let users = chat.user_ids.iter().map(String::as_str).collect();
            (chat.chat_id.as_str(), users)
        })
        .collect();
    assert_eq!(
        members,
        [
            (with_carol.as_str(), vec!["alice", "carol"]),
            (with_bob.as_str(), vec!["alice", "bob"])
        ]
    );
    // Where each matched, in the same order: "Pineapple pizza tonight?" and "No pineapple,
    // please.", case ignored.
    let marked: Vec<Vec<&str>> = all
        .messages
        .iter()
        .zip(&all.matches)
        .map(|(message, matches)| marked(&message.text, &matches.text))
        .collect();
    assert_eq!(marked, [vec!["pineapple"], vec!["Pineapple"]]);
    assert!(all.matches.iter().all(|matches| matches.subject.is_empty()));

    let one = SearchRequest {
        chat_id: with_bob.clone(),
        ..query("PINEAPPLE")
    };
    assert_eq!(
        search_on(&chat, &alice, one).await.unwrap().messages,
        [first]
    );

    let foreign = SearchRequest {
        chat_id: without_alice,
        ..query("pineapple")
    };
    let status = search_on(&chat, &alice, foreign).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "chat not found")
    );

    // The last word is a prefix while it may still be being typed.
    assert_eq!(found(&chat, &alice, "pinea").await.len(), 2);
    let pine = search_on(&chat, &alice, query("pine")).await.unwrap();
    assert_eq!(pine.messages.len(), 3);
    let chats: Vec<&str> = pine.chats.iter().map(|c| c.chat_id.as_str()).collect();
    assert_eq!(chats, [&with_bob, &with_carol], "each chat once");
    assert_eq!(found(&chat, &alice, "pine ").await, ["pine trees"]);
    assert!(found(&chat, &alice, "secret").await.is_empty());
}

#[tokio::test]
async fn only_my_chats_are_searched_over_native_grpc() {
    let app = spawn_app().await;
    let chat = app.chat().await;
    only_my_chats_are_searched(&app, chat).await;
}

#[tokio::test]
async fn only_my_chats_are_searched_over_grpc_web() {
    let app = spawn_app().await;
    only_my_chats_are_searched(&app, app.web_chat()).await;
}

/// 25 matches in pages of 10, then the default page: newest first, no gap, no repeat.
async fn pages_walk_every_match_once<T: Transport>(app: &TestApp, chat: ChatClient<T>) {
    let (alice, bob, chat_id) = alice_and_bob(app).await;
    let matching = send_many(
        app,
        &alice,
        &chat_id,
        25,
        "weekly report attached, 每周报告",
    )
    .await;
    send_many(app, &bob, &chat_id, 5, "unrelated").await;

    // One word, and queries of several lexemes (two words; a Chinese word, a phrase of its
    // characters), which PostgreSQL first looks for among the newest messages.
    for search in ["report", "weekly report", "报告"] {
        let mut walked: Vec<Message> = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let request = SearchRequest {
                limit: 10,
                page_token: token.clone(),
                ..query(search)
            };
            let page = search_on(&chat, &alice, request).await.unwrap();
            pages += 1;
            walked.extend(page.messages);
            if !page.has_more {
                assert_eq!(page.next_page_token, "");
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, 3, "{search:?}");
        let mut expected = matching.clone();
        expected.reverse();
        assert_eq!(
            walked, expected,
            "{search:?}: every match once, newest first"
        );
    }

    let default = search_on(&chat, &alice, query("report")).await.unwrap();
    assert_eq!(default.messages.len(), SEARCH_DEFAULT_PAGE as usize);
    assert!(default.has_more);
}

#[tokio::test]
async fn pages_walk_every_match_once_over_native_grpc() {
    let app = spawn_app().await;
    let chat = app.chat().await;
    pages_walk_every_match_once(&app, chat).await;
}

#[tokio::test]
async fn pages_walk_every_match_once_over_grpc_web() {
    let app = spawn_app().await;
    pages_walk_every_match_once(&app, app.web_chat()).await;
}

#[tokio::test]
async fn words_are_found_in_several_languages_and_between_punctuation() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let texts = [
        "Café crème, s'il vous plaît!",
        "Grüße aus München (und Köln).",
        "Привет, как дела?",
        "שלום עולם",
        "مرحبا بالعالم",
        "東京 タワー",
        "¿Dónde está la estación?",
        "mail me: bob@example.com — urgent!!!",
        "v2.0 released; see release-notes.md",
        "Ελληνικά γράμματα",
        // Words with combining marks (Devanagari's vowel signs and virama, Arabic's
        // harakat): SQLite's tokenizer splits them at the marks, so each query word is
        // several index terms, which only an index that keeps positions can match.
        "नमस्ते दुनिया",
        "اللُّغَةُ العَرَبِيَّةُ جميلة",
        // ʻ is a letter (Hawaiian's ʻokina), which PostgreSQL's unaccent turns into a quote.
        "Aloha from Hawaiʻi",
    ];
    for (n, text) in texts.iter().enumerate() {
        send_text(&mut chat, &bob, &chat_id, &format!("t{n}"), text).await;
    }
    for (search, expected) in [
        ("café", texts[0]),
        ("PLAÎT", texts[0]),
        ("münchen", texts[1]),
        ("köln", texts[1]),
        ("привет дела", texts[2]),
        ("ДЕЛА", texts[2]),
        ("עולם", texts[3]),
        ("بالعالم", texts[4]),
        ("東京", texts[5]),
        ("estación", texts[6]),
        ("example", texts[7]),
        ("bob@example.com", texts[7]),
        ("urgent", texts[7]),
        ("release notes", texts[8]),
        ("v2.0", texts[8]),
        ("γράμματα", texts[9]),
        ("नमस्ते", texts[10]),
        ("दुनि", texts[10]),
        ("العَرَبِيَّةُ", texts[11]),
        ("اللُّغَ", texts[11]),
        ("hawaiʻi", texts[12]),
        ("HAWAIʻ", texts[12]),
    ] {
        assert_eq!(
            found(&chat, &alice, search).await,
            [expected],
            "query {search:?}"
        );
    }
    // Both indexes ignore accents, in the text and in the query.
    assert_eq!(found(&chat, &alice, "cafe creme").await, [texts[0]]);
    assert_eq!(found(&chat, &alice, "estacion").await, [texts[6]]);
}

/// Chinese, Japanese, Thai, Lao, Khmer and Burmese put no spaces between words, and Korean
/// joins a noun and its particles: a query is found anywhere inside such a run, its characters one after another
/// and in order, also after an edit. ß and ligatures fold on both backends.
#[tokio::test]
async fn chinese_japanese_and_korean_are_found_inside_a_run_of_characters() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let texts = [
        "我明天去东京开会，你呢？",
        "会议室预订好了吗",
        "東京タワーに行きました",
        "서울에서 만나요",
        "iPhone用のケースを買った",
        "京东的快递到了",
        "Grüße aus der Straße",
        "Œuvre complète, ﬁnale",
        "วันนี้ประชุมที่กรุงเทพ",
        "ຂ້ອຍຢູ່ວຽງຈັນ",
        "ខ្ញុំរស់នៅភ្នំពេញ",
        "ကျွန်တော်ရန်ကုန်မှာနေတယ်",
    ];
    let mut sent = Vec::new();
    for (n, text) in texts.iter().enumerate() {
        sent.push(send_text(&mut chat, &bob, &chat_id, &format!("c{n}"), text).await);
    }
    for (search, expected) in [
        ("东京", vec![texts[0]]),
        ("开会", vec![texts[0]]),
        ("预订", vec![texts[1]]),
        ("会议室", vec![texts[1]]),
        ("会", vec![texts[1], texts[0]]),
        ("タワー", vec![texts[2]]),
        ("行き", vec![texts[2]]),
        ("東京 行", vec![texts[2]]),
        ("서울", vec![texts[3]]),
        ("만나", vec![texts[3]]),
        ("iphone", vec![texts[4]]),
        ("ケース", vec![texts[4]]),
        ("京东", vec![texts[5]]),
        ("grusse", vec![texts[6]]),
        ("STRASSE", vec![texts[6]]),
        ("straße", vec![texts[6]]),
        ("oeuvre finale", vec![texts[7]]),
        // Thai, Lao, Khmer and Burmese: a city inside a sentence, and Thai "meeting", each
        // a whole word (the space: not a prefix).
        ("ประชุม ", vec![texts[8]]),
        ("กรุงเทพ ", vec![texts[8]]),
        ("ວຽງຈັນ ", vec![texts[9]]),
        ("ភ្នំពេញ ", vec![texts[10]]),
        ("ရန်ကုန် ", vec![texts[11]]),
    ] {
        assert_eq!(
            found(&chat, &alice, search).await,
            expected,
            "query {search:?}"
        );
    }
    // What a client marks: the run of characters, and ß spelled out.
    for (search, text, expected) in [
        ("东京", texts[0], vec!["东京"]),
        ("会 行き", texts[2], vec![]),
        ("タワー 行き", texts[2], vec!["タワー", "行き"]),
        ("strasse grüsse", texts[6], vec!["Grüße", "Straße"]),
    ] {
        let page = search_on(&chat, &alice, query(search)).await.unwrap();
        let at = page
            .messages
            .iter()
            .position(|message| message.text == text);
        match at {
            Some(at) => assert_eq!(
                marked(text, &page.matches[at].text),
                expected,
                "query {search:?}"
            ),
            None => assert!(expected.is_empty(), "query {search:?} found nothing"),
        }
    }
    // The characters must stand together and in the query's order. (Punctuation and spaces
    // between them are not counted: "서만" would find the end of 서울에서 and the start of 만나요.)
    for search in ["东开", "京会", "울만", "タワ行"] {
        assert_eq!(
            found(&chat, &alice, search).await,
            Vec::<String>::new(),
            "query {search:?}"
        );
    }

    within(chat.edit(authed(
        &bob,
        EditRequest {
            chat_id: chat_id.clone(),
            message_id: sent[1].id.clone(),
            subject: String::new(),
            text: "会议改到星期三".into(),
        },
    )))
    .await
    .expect("bob edits his message");
    assert_eq!(found(&chat, &alice, "预订").await, Vec::<String>::new());
    assert_eq!(found(&chat, &alice, "星期三").await, ["会议改到星期三"]);
}

#[tokio::test]
async fn quotes_and_operators_in_a_query_are_plain_words() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    for (n, text) in [
        "apples OR oranges",
        "apples only",
        "NEAR the end",
        "she said \"quoted\" words",
        "a star* here",
        "minus -one",
        "col:umn AND (paren)",
        "it's O'Brien's",
    ]
    .iter()
    .enumerate()
    {
        send_text(&mut chat, &bob, &chat_id, &format!("o{n}"), text).await;
    }
    for (search, expected) in [
        ("apples OR", vec!["apples OR oranges"]),
        ("apples NOT oranges", vec![]),
        ("NEAR(", vec!["NEAR the end"]),
        ("\"quoted", vec!["she said \"quoted\" words"]),
        ("\"quoted\" words\"", vec!["she said \"quoted\" words"]),
        ("star*", vec!["a star* here"]),
        ("-one", vec!["minus -one"]),
        ("col:umn", vec!["col:umn AND (paren)"]),
        ("AND (paren", vec!["col:umn AND (paren)"]),
        ("o'brien's", vec!["it's O'Brien's"]),
        ("'", vec![]),
        ("^apples", vec!["apples only", "apples OR oranges"]),
    ] {
        match search_on(&chat, &alice, query(search)).await {
            Ok(page) => {
                let texts: Vec<String> = page.messages.into_iter().map(|m| m.text).collect();
                assert_eq!(texts, expected, "query {search:?}");
            }
            // Only a query with no word at all may be refused, and with its own sentence.
            Err(status) => {
                assert!(expected.is_empty(), "query {search:?}: {status:?}");
                assert_eq!(
                    (status.code(), status.message()),
                    (
                        Code::InvalidArgument,
                        "search query has no words: search for letters or digits, not only punctuation"
                    ),
                    "query {search:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn bad_searches_are_refused_with_a_sentence() {
    let app = spawn_app().await;
    let (alice, _, _) = alice_and_bob(&app).await;
    let chat = app.chat().await;
    let too_long = "x".repeat(SEARCH_QUERY_MAX_CHARS + 1);
    let too_many: String = (0..=SEARCH_MAX_WORDS).map(|n| format!("w{n} ")).collect();
    for (request, expected) in [
        (
            query(""),
            "search query is empty: type the words to look for".to_owned(),
        ),
        (
            query(" \u{200B}\t"),
            "search query is empty: type the words to look for".to_owned(),
        ),
        (
            query("?! -- ..."),
            "search query has no words: search for letters or digits, not only punctuation"
                .to_owned(),
        ),
        (
            query(&too_long),
            format!(
                "search query is {} characters long; the limit is {SEARCH_QUERY_MAX_CHARS}",
                SEARCH_QUERY_MAX_CHARS + 1
            ),
        ),
        (
            query(&too_many),
            format!(
                "search query has {} words; search for at most {SEARCH_MAX_WORDS}",
                SEARCH_MAX_WORDS + 1
            ),
        ),
        (
            SearchRequest {
                limit: -1,
                ..query("ok")
            },
            "limit must not be negative".to_owned(),
        ),
        (
            SearchRequest {
                page_token: "next".into(),
                ..query("ok")
            },
            "page_token \"next\" is not a page token: use the next_page_token of the previous List"
                .to_owned(),
        ),
        (
            SearchRequest {
                chat_id: "nope".into(),
                ..query("ok")
            },
            "chat_id \"nope\" is not a chat id: use one returned by New or List".to_owned(),
        ),
    ] {
        let status = search_on(&chat, &alice, request.clone()).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, expected.as_str()),
            "{request:?}"
        );
    }
    // Without a token nothing about the query is looked at.
    let status = within(chat.clone().search(query(""))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// The index follows the `subject` and `text` columns: an edited message is found by its new
/// words only, a deleted one not at all.
#[tokio::test]
async fn edited_and_deleted_messages_are_followed_by_the_index() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let edited = send_text(&mut chat, &bob, &chat_id, "e", "meeting on monday").await;
    let deleted = send_text(&mut chat, &bob, &chat_id, "d", "meeting password hunter2").await;
    assert_eq!(found(&chat, &alice, "meeting").await.len(), 2);

    within(chat.edit(authed(
        &bob,
        EditRequest {
            chat_id: chat_id.clone(),
            message_id: edited.id.clone(),
            subject: "moved".into(),
            text: "standup on tuesday".into(),
        },
    )))
    .await
    .expect("bob edits his message");
    within(chat.delete(authed(
        &bob,
        DeleteRequest {
            chat_id: chat_id.clone(),
            message_id: deleted.id.clone(),
        },
    )))
    .await
    .expect("bob deletes his message");

    assert!(found(&chat, &alice, "meeting").await.is_empty());
    assert!(found(&chat, &alice, "hunter2").await.is_empty());
    assert_eq!(
        found(&chat, &alice, "tuesday").await,
        ["standup on tuesday"]
    );
    assert_eq!(
        found(&chat, &alice, "moved standup").await,
        ["standup on tuesday"]
    );
}

/// Words that are only marks (a combining accent, which the indexes drop; a Thai vowel
/// sign; the kana voicing mark, which is not a letter) are searched without an error: a
/// blank word once made PostgreSQL's search fail with UNAVAILABLE.
#[tokio::test]
async fn queries_of_marks_alone_find_nothing_or_are_refused_never_fail() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    send_text(&mut chat, &bob, &chat_id, "m1", "ประชุม café").await;
    for search in ["\u{301}", "\u{301} ", "\u{e38}", "\u{e48}x", "a\u{301}"] {
        let page = search_on(&chat, &alice, query(search))
            .await
            .unwrap_or_else(|status| panic!("{search:?}: {status:?}"));
        assert!(page.messages.len() <= 1, "{search:?}");
    }
    assert!(found(&chat, &alice, "\u{301}").await.is_empty());
    assert_eq!(
        found(&chat, &alice, "caf\u{e9} \u{301}").await,
        ["ประชุม café"]
    );
    let refused = search_on(&chat, &alice, query("\u{3099}"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
}

/// Migration 13 (PostgreSQL): the servers make the search words, no longer SQL. A database of
/// version 12, whose words `chat_words` generated, has every message's words made anew when a
/// server of version 13 first starts on it, so old messages are found as new ones are: "Hawaiʻi"
/// was two words there (`unaccent` made its ʻ a quote) and is one now.
#[tokio::test]
async fn an_upgraded_postgresql_database_finds_its_old_messages_by_the_servers_words() {
    if !on_postgres() {
        return;
    }
    let mut app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let texts = [
        "Aloha from Hawaiʻi",
        "Grüße aus der Straße",
        "我住在东京",
        "नमस्ते दुनिया",
        "mail user@example.com about v2.0",
    ];
    for (n, text) in texts.iter().enumerate() {
        send_text(&mut chat, &bob, &chat_id, &format!("u{n}"), text).await;
    }
    app.stop().await;

    // The schema of version 12, rebuilt by its own migrations: 11 defines chat_words and
    // generates the column with it, 12 redefines both. What the later ones made goes first
    // (13's function, 14's column, 15's table, 16's column; 17 dropped a constraint), so
    // that they apply again.
    let database = app.database().expect("a PostgreSQL database");
    database
        .batch(
            "DELETE FROM schema_migrations WHERE version >= 13;
             DROP FUNCTION chat_append;
             ALTER TABLE accounts DROP COLUMN deactivated_at;
             DROP TABLE devices;
             ALTER TABLE chats DROP COLUMN members_version;
             ALTER TABLE messages ADD CONSTRAINT messages_chat_fkey
                 FOREIGN KEY (chat) REFERENCES chats(id)",
        )
        .await;
    for version in [11, 12] {
        let sql = chat_server::postgres_migration_sql(version).expect("the migration");
        database.batch(sql).await;
    }
    let hawaii = "SELECT search::text FROM messages WHERE text = 'Aloha from Hawaiʻi'";
    assert_eq!(
        database.query_text(hawaii).await,
        "'aloha':1 'from':2 'hawai':3 'i':4",
        "version 12's words"
    );

    // Started on it, a server migrates before it answers its first call.
    app.restart().await;
    let chat = app.chat().await;
    for (query, text) in [
        ("Hawaiʻi", texts[0]),
        ("strasse grusse", texts[1]),
        ("东京", texts[2]),
        ("नमस्ते", texts[3]),
        ("example v2", texts[4]),
    ] {
        assert_eq!(found(&chat, &alice, query).await, [text], "{query}");
    }
    let database = app.database().expect("a PostgreSQL database");
    assert_eq!(
        database.query_text(hawaii).await,
        "'aloha':1 'from':2 'hawaiʻi':3",
        "the servers' words"
    );
    assert_eq!(
        database
            .query_text("SELECT max(version)::text FROM schema_migrations")
            .await,
        newest_postgres_migration().to_string()
    );
    // An older server, which writes no words, cannot store a message without them.
    assert_eq!(
        database
            .query_text(
                "SELECT attnotnull::text FROM pg_attribute
                 WHERE attrelid = 'messages'::regclass AND attname = 'search'"
            )
            .await,
        "true"
    );
}

/// The number of the newest PostgreSQL migration this server has.
fn newest_postgres_migration() -> usize {
    (1..)
        .find(|version| chat_server::postgres_migration_sql(*version).is_none())
        .expect("a version without a migration")
        - 1
}
