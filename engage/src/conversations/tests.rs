//! Tests of the conversation service against the real embedded store.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::broadcast::error::TryRecvError;

use super::*;
use crate::clock::ManualClock;
use crate::model::{Role, Site};
use crate::redb_store::RedbStore;

const SITE: &str = "demo";
const OTHER_SITE: &str = "other";
const T0: i64 = 1_700_000_000_000;
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    service: Conversations,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).await.unwrap();
    for key in [SITE, OTHER_SITE] {
        store
            .create_site(&Site {
                key: key.into(),
                name: key.into(),
                allowed_origins: vec!["*".into()],
                created_ms: 0,
            })
            .await
            .unwrap();
    }
    let clock = Arc::new(ManualClock::new(T0));
    let service = Conversations::start(Arc::new(store), clock.clone(), dir.path())
        .await
        .unwrap();
    Fixture {
        dir,
        clock,
        service,
    }
}

fn agent(id: u64, role: Role, sites: &[&str]) -> Agent {
    Agent {
        id,
        email: format!("agent{id}@example.com"),
        name: format!("Agent {id}"),
        role,
        password_hash: String::new(),
        sites: sites.iter().map(|s| s.to_string()).collect(),
        created_ms: 0,
        disabled: false,
    }
}

fn ann() -> Agent {
    agent(1, Role::Agent, &[SITE])
}

fn bob() -> Agent {
    agent(2, Role::Agent, &[SITE])
}

fn visitor(id: &str) -> VisitorRef<'_> {
    VisitorRef::new(SITE, id)
}

async fn start(f: &Fixture, visitor_id: &str, text: &str) -> Conversation {
    f.service
        .start_by_visitor(visitor(visitor_id), text, None, StartDetails::default())
        .await
        .unwrap()
        .conversation
}

fn texts(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match &m.body {
            MessageBody::Text { text } => format!("text:{text}"),
            MessageBody::Note { text } => format!("note:{text}"),
            MessageBody::Attachment { attachment, .. } => format!("file:{}", attachment.name),
            MessageBody::Event { event } => format!("event:{event:?}"),
        })
        .collect()
}

async fn all_messages(f: &Fixture, id: u64) -> Vec<Message> {
    f.service.store().messages(id, 0, usize::MAX).await.unwrap()
}

#[tokio::test]
async fn a_visitor_starts_and_continues_one_conversation() {
    let f = fixture().await;
    let details = StartDetails {
        subject: Some("  Shipping  ".into()),
        page_url: Some("https://shop.example/pricing".into()),
        prechat: Some(PreChat {
            name: Some("Ada".into()),
            email: Some("ada@example.com".into()),
        }),
    };
    let first = f
        .service
        .start_by_visitor(
            visitor("v1").with_ip(Some("203.0.113.7".parse().unwrap())),
            "  Hello?  ",
            Some("c1"),
            details,
        )
        .await
        .unwrap();
    let c = &first.conversation;
    assert!(!first.duplicate);
    assert_eq!(first.message.seq, 1);
    assert_eq!(first.message.author, Author::Visitor);
    assert_eq!(texts(std::slice::from_ref(&first.message)), ["text:Hello?"]);
    assert_eq!((c.site.as_str(), c.visitor_id.as_str()), (SITE, "v1"));
    assert_eq!(c.state, ConversationState::Open);
    assert_eq!(c.origin, ConversationOrigin::Visitor);
    assert_eq!(c.assigned_agent, None);
    assert_eq!(c.subject.as_deref(), Some("Shipping"));
    assert_eq!(c.visitor_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(c.prechat.as_ref().unwrap().name.as_deref(), Some("Ada"));
    assert_eq!(c.last_message_preview.as_deref(), Some("Hello?"));
    assert_eq!((c.created_ms, c.last_message_ms), (T0, T0));

    // A second start while the first is open writes into the same conversation.
    f.clock.advance_ms(1_000);
    let second = f
        .service
        .start_by_visitor(visitor("v1"), "Anyone?", None, StartDetails::default())
        .await
        .unwrap();
    assert_eq!(second.conversation.id, c.id);
    assert_eq!(second.message.seq, 2);
    assert_eq!(second.conversation.last_message_ms, T0 + 1_000);
    let stored = f.service.conversation(c.id).await.unwrap();
    assert_eq!(stored, second.conversation);
    assert_eq!(
        f.service
            .conversations_of_visitor(SITE, "v1", Party::Visitor(visitor("v1")))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn concurrent_starts_open_one_conversation() {
    let f = Arc::new(fixture().await);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                f.service
                    .start_by_visitor(
                        visitor("v1"),
                        &format!("hello {i}"),
                        None,
                        StartDetails::default(),
                    )
                    .await
                    .unwrap()
                    .conversation
                    .id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(all_messages(&f, ids[0]).await.len(), 8);
}

#[tokio::test]
async fn posting_is_idempotent_by_client_id() {
    let f = fixture().await;
    let c = start(&f, "v1", "hi").await;
    let post = |text: &'static str, client_id: &'static str| {
        f.service
            .post_visitor_message(c.id, visitor("v1"), Content::text(text), Some(client_id))
    };
    let first = post("once", "k1").await.unwrap();
    let again = post("once", "k1").await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert_eq!(again.conversation.last_seq, first.conversation.last_seq);
    // Even a retry with different text is the same message: the key decides.
    let changed = post("twice", "k1").await.unwrap();
    assert!(changed.duplicate && changed.message.seq == first.message.seq);
    let agent_retry = f
        .service
        .post_agent_message(c.id, &ann(), Content::text("ack"), Some("a1"))
        .await
        .unwrap();
    let agent_again = f
        .service
        .post_agent_message(c.id, &ann(), Content::text("ack"), Some("a1"))
        .await
        .unwrap();
    assert!(agent_again.duplicate);
    assert_eq!(agent_again.message.seq, agent_retry.message.seq);
    assert_eq!(
        texts(&all_messages(&f, c.id).await),
        [
            "text:hi".to_string(),
            "text:once".into(),
            "event:Assigned { agent_id: 1, name: \"Agent 1\" }".into(),
            "event:AgentJoined { agent_id: 1, name: \"Agent 1\" }".into(),
            "text:ack".into(),
        ]
    );
}

#[tokio::test]
async fn concurrent_posts_get_dense_ordered_seqs() {
    let f = Arc::new(fixture().await);
    let c = start(&f, "v1", "first").await;
    let mut tasks = Vec::new();
    for task in 0..4 {
        let f = Arc::clone(&f);
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                let text = format!("t{task} m{i}");
                let client_id = format!("{task}-{i}");
                let outcome = if task % 2 == 0 {
                    f.service
                        .post_visitor_message(
                            c.id,
                            visitor("v1"),
                            Content::Text(text),
                            Some(&client_id),
                        )
                        .await
                } else {
                    f.service
                        .post_agent_message(
                            c.id,
                            &agent(10 + task, Role::Agent, &[SITE]),
                            Content::Text(text),
                            Some(&client_id),
                        )
                        .await
                };
                seqs.push(outcome.unwrap().message.seq);
            }
            seqs
        }));
    }
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
    let messages = all_messages(&f, c.id).await;
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let texts = texts(&messages);
    assert_eq!(texts.iter().filter(|t| t.starts_with("text:")).count(), 41);
    assert_eq!(
        f.service.conversation(c.id).await.unwrap().last_seq,
        seqs.len() as u64
    );
}

#[tokio::test]
async fn acknowledged_messages_survive_a_restart() {
    let dir;
    let id;
    let mut acknowledged = Vec::new();
    {
        let f = fixture().await;
        let c = start(&f, "v1", "hello").await;
        id = c.id;
        acknowledged.push(1);
        for i in 0..20 {
            let outcome = if i % 3 == 0 {
                f.service
                    .post_agent_message(id, &ann(), Content::text(format!("a{i}")), None)
                    .await
            } else {
                f.service
                    .post_visitor_message(
                        id,
                        visitor("v1"),
                        Content::text(format!("v{i}")),
                        Some(&format!("k{i}")),
                    )
                    .await
            };
            acknowledged.push(outcome.unwrap().message.seq);
        }
        f.service.resolve(id, &ann()).await.unwrap();
        dir = f.dir;
        // Dropping the fixture's service drops the last handle on the database.
    }
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).await.unwrap());
    let service = Conversations::start(store, Arc::new(ManualClock::new(T0)), dir.path())
        .await
        .unwrap();
    let messages = service.store().messages(id, 0, usize::MAX).await.unwrap();
    for seq in &acknowledged {
        assert_eq!(
            messages.iter().filter(|m| m.seq == *seq).count(),
            1,
            "message {seq} must be there exactly once"
        );
    }
    let conversation = service.conversation(id).await.unwrap();
    assert_eq!(conversation.state, ConversationState::Resolved);
    assert_eq!(conversation.last_seq, messages.len() as u64);
    // The idempotency index survives too.
    let retry = service
        .post_visitor_message(id, visitor("v1"), Content::text("v1"), Some("k1"))
        .await
        .unwrap();
    assert!(retry.duplicate);
}

#[tokio::test]
async fn a_visitor_message_reopens_a_resolved_conversation() {
    let f = fixture().await;
    let c = start(&f, "v1", "hi").await;
    f.service
        .post_agent_message(c.id, &ann(), Content::text("hello"), None)
        .await
        .unwrap();
    f.clock.advance_ms(10);
    let resolved = f.service.resolve(c.id, &ann()).await.unwrap();
    assert_eq!(resolved.state, ConversationState::Resolved);
    assert_eq!(resolved.resolved_ms, Some(T0 + 10));
    // Resolving twice changes nothing.
    assert_eq!(f.service.resolve(c.id, &ann()).await.unwrap(), resolved);
    // An agent must reopen explicitly before writing.
    let err = f
        .service
        .post_agent_message(c.id, &ann(), Content::text("more"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Invalid(_)), "{err:?}");

    f.clock.advance_ms(10);
    let posted = f
        .service
        .post_visitor_message(c.id, visitor("v1"), Content::text("one more thing"), None)
        .await
        .unwrap();
    let reopened = posted.conversation;
    assert_eq!(reopened.state, ConversationState::Open);
    assert_eq!(reopened.resolved_ms, None);
    assert_eq!(reopened.assigned_agent, Some(1), "back to the same agent");
    let messages = all_messages(&f, c.id).await;
    let tail = texts(&messages[messages.len() - 3..]);
    assert_eq!(
        tail,
        [
            "event:Resolved { by: Some(1) }",
            "event:Reopened",
            "text:one more thing"
        ]
    );
    // And the agent's reopen works the same way from a resolved state.
    f.service.resolve(c.id, &ann()).await.unwrap();
    let again = f.service.reopen(c.id, &bob()).await.unwrap();
    assert_eq!(again.state, ConversationState::Open);
    assert_eq!(f.service.reopen(c.id, &bob()).await.unwrap(), again);
}

#[tokio::test]
async fn resolve_permissions_table() {
    let f = fixture().await;
    let assigned = ann();
    let cases = [
        ("assigned agent", assigned.clone(), true),
        ("other agent", bob(), false),
        ("admin", agent(3, Role::Admin, &[]), true),
        ("owner", agent(4, Role::Owner, &[]), true),
        (
            "agent without site access",
            agent(5, Role::Agent, &[OTHER_SITE]),
            false,
        ),
        (
            "disabled admin",
            Agent {
                disabled: true,
                ..agent(6, Role::Admin, &[])
            },
            false,
        ),
    ];
    for (i, (name, who, allowed)) in cases.into_iter().enumerate() {
        let c = start(&f, &format!("v{i}"), "hi").await;
        f.service.open_by_agent(c.id, &assigned).await.unwrap();
        let result = f.service.resolve(c.id, &who).await;
        assert_eq!(result.is_ok(), allowed, "{name}: {result:?}");
        if let Err(err) = result {
            assert!(matches!(err, ConversationError::Forbidden(_)), "{name}");
        }
    }
    let c = start(&f, "vx", "hi").await;
    let err = f.service.resolve(c.id, &bob()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "only the assigned agent, an admin or the owner may resolve this conversation"
    );
    let err = f
        .service
        .resolve(c.id, &agent(5, Role::Agent, &[OTHER_SITE]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "you have no access to this site");
}

#[tokio::test]
async fn notes_never_reach_the_visitor_nor_the_preview() {
    let f = fixture().await;
    let c = start(&f, "v1", "hi").await;
    f.service
        .post_agent_message(c.id, &ann(), Content::text("hello there"), None)
        .await
        .unwrap();
    let note = f
        .service
        .add_note(c.id, &ann(), "he sounds like a big buyer", None)
        .await
        .unwrap();
    assert_eq!(
        note.conversation.last_message_preview.as_deref(),
        Some("hello there")
    );
    let for_visitor = f
        .service
        .messages(c.id, Party::Visitor(visitor("v1")), 0, 100)
        .await
        .unwrap();
    assert_eq!(
        texts(&for_visitor),
        [
            "text:hi",
            "event:AgentJoined { agent_id: 1, name: \"Agent 1\" }",
            "text:hello there"
        ]
    );
    let for_agent = f
        .service
        .messages(c.id, Party::Agent(&bob()), 0, 100)
        .await
        .unwrap();
    assert!(
        texts(&for_agent).contains(&"note:he sounds like a big buyer".to_string()),
        "{for_agent:?}"
    );
    // Paging over hidden messages still returns full pages for the visitor.
    for i in 0..5 {
        f.service
            .add_note(c.id, &ann(), &format!("note {i}"), None)
            .await
            .unwrap();
    }
    f.service
        .post_visitor_message(c.id, visitor("v1"), Content::text("still there?"), None)
        .await
        .unwrap();
    let page = f
        .service
        .messages(c.id, Party::Visitor(visitor("v1")), 3, 1)
        .await
        .unwrap();
    assert_eq!(texts(&page), ["text:hello there"]);
    let page = f
        .service
        .messages(c.id, Party::Visitor(visitor("v1")), page[0].seq, 10)
        .await
        .unwrap();
    assert_eq!(texts(&page), ["text:still there?"]);
    // Another visitor, or an agent without access, reads nothing.
    let err = f
        .service
        .messages(c.id, Party::Visitor(visitor("v2")), 0, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::NotFound(_)), "{err:?}");
    let err = f
        .service
        .messages(
            c.id,
            Party::Agent(&agent(9, Role::Agent, &[OTHER_SITE])),
            0,
            10,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Forbidden(_)), "{err:?}");
}

#[tokio::test]
async fn agents_open_join_invite_and_leave() {
    let f = fixture().await;
    let c = start(&f, "v1", "hi").await;
    let opened = f.service.open_by_agent(c.id, &ann()).await.unwrap();
    assert_eq!(opened.assigned_agent, Some(1));
    assert_eq!(opened.participants, vec![1]);
    // Opening an assigned conversation changes nothing.
    let seen = f.service.open_by_agent(c.id, &bob()).await.unwrap();
    assert_eq!(seen, opened);

    let outsider = agent(7, Role::Agent, &[OTHER_SITE]);
    let err = f.service.invite(c.id, &ann(), &outsider).await.unwrap_err();
    assert_eq!(err.to_string(), "Agent 7 has no access to this site");
    let invited = f.service.invite(c.id, &ann(), &bob()).await.unwrap();
    assert_eq!(invited.invited, vec![2]);
    let err = f.service.invite(c.id, &bob(), &ann()).await.unwrap_err();
    assert_eq!(err.to_string(), "Agent 1 is already in this conversation");
    let joined = f.service.join(c.id, &bob()).await.unwrap();
    assert_eq!(joined.participants, vec![1, 2]);
    assert!(joined.invited.is_empty());
    assert_eq!(joined.assigned_agent, Some(1));

    // The assigned agent leaves: the conversation passes to the remaining participant.
    let left = f.service.leave(c.id, &ann()).await.unwrap();
    assert_eq!(left.participants, vec![2]);
    assert_eq!(left.assigned_agent, Some(2));
    let left = f.service.leave(c.id, &bob()).await.unwrap();
    assert!(left.participants.is_empty());
    assert_eq!(left.assigned_agent, None);

    let events: Vec<String> = texts(&all_messages(&f, c.id).await)
        .into_iter()
        .skip(1)
        .collect();
    assert_eq!(
        events,
        [
            "event:Assigned { agent_id: 1, name: \"Agent 1\" }",
            "event:AgentJoined { agent_id: 1, name: \"Agent 1\" }",
            "event:AgentInvited { agent_id: 2, name: \"Agent 2\", by: 1 }",
            "event:AgentJoined { agent_id: 2, name: \"Agent 2\" }",
            "event:AgentLeft { agent_id: 1, name: \"Agent 1\" }",
            // Agent 2 is not in the store, so the name is unknown here.
            "event:Assigned { agent_id: 2, name: \"\" }",
            "event:AgentLeft { agent_id: 2, name: \"Agent 2\" }",
        ]
    );
    let err = f
        .service
        .open_by_agent(c.id, &agent(8, Role::Agent, &[OTHER_SITE]))
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Forbidden(_)), "{err:?}");
}

#[tokio::test]
async fn an_agent_reply_assigns_and_records_the_first_reply() {
    let f = fixture().await;
    let c = start(&f, "v1", "hi").await;
    f.clock.advance_ms(5_000);
    let reply = f
        .service
        .post_agent_message(c.id, &bob(), Content::text("How can I help?"), None)
        .await
        .unwrap();
    let c = reply.conversation;
    assert_eq!(
        reply.message.seq, 4,
        "assigned and joined events come first"
    );
    assert_eq!(c.assigned_agent, Some(2));
    assert_eq!(c.participants, vec![2]);
    assert_eq!(c.first_agent_reply_ms, Some(T0 + 5_000));
    assert_eq!(c.agent_read(2), 4);
    // A colleague writing joins without taking the assignment.
    let next = f
        .service
        .post_agent_message(c.id, &ann(), Content::text("me too"), None)
        .await
        .unwrap();
    assert_eq!(next.conversation.assigned_agent, Some(2));
    assert_eq!(next.conversation.participants, vec![2, 1]);
    assert_eq!(next.conversation.first_agent_reply_ms, Some(T0 + 5_000));
}

#[tokio::test]
async fn agents_start_conversations() {
    let f = fixture().await;
    let outcome = f
        .service
        .start_by_agent(
            visitor("v1"),
            &ann(),
            "20% off today!",
            Some("offer-1"),
            StartDetails {
                page_url: Some("https://shop.example/".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let c = &outcome.conversation;
    assert_eq!(c.origin, ConversationOrigin::Agent { agent_id: 1 });
    assert_eq!(
        (c.assigned_agent, c.participants.clone()),
        (Some(1), vec![1])
    );
    assert_eq!(outcome.message.seq, 1);
    assert_eq!(
        outcome.message.author,
        Author::Agent {
            id: 1,
            name: "Agent 1".into()
        }
    );
    assert_eq!(c.first_agent_reply_ms, Some(T0));
    // Visitor answers; a second "open conversation" from the panel goes to the same chat.
    f.service
        .post_visitor_message(c.id, visitor("v1"), Content::text("yes please"), None)
        .await
        .unwrap();
    let again = f
        .service
        .start_by_agent(visitor("v1"), &bob(), "hi", None, StartDetails::default())
        .await
        .unwrap();
    assert_eq!(again.conversation.id, c.id);
    let err = f
        .service
        .start_by_agent(
            visitor("v2"),
            &agent(9, Role::Agent, &[OTHER_SITE]),
            "hi",
            None,
            StartDetails::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Forbidden(_)), "{err:?}");
}

#[tokio::test]
async fn triggers_start_conversations_that_wait_for_the_visitor() {
    let f = fixture().await;
    let outcome = f
        .service
        .start_by_trigger(
            visitor("v1"),
            42,
            "Shop assistant",
            "Need help choosing?",
            StartDetails::default(),
        )
        .await
        .unwrap();
    let c = outcome.conversation;
    assert_eq!(c.origin, ConversationOrigin::trigger(42));
    assert_eq!(
        outcome.message.author,
        Author::Bot {
            name: "Shop assistant".into()
        }
    );
    let inbox = f
        .service
        .inbox(&ann(), &[SITE.to_string()], &InboxFilter::default())
        .await
        .unwrap();
    assert!(inbox.is_empty(), "an unanswered trigger is in no tab");
    // Nobody left unanswered: leaving now does not make it missed.
    assert!(f.service.visitor_left(SITE, "v1").await.unwrap().is_empty());
    let err = f
        .service
        .start_by_trigger(visitor("v1"), 43, "Bot", "again", StartDetails::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Invalid(_)), "{err:?}");

    f.service
        .post_visitor_message(c.id, visitor("v1"), Content::text("yes!"), None)
        .await
        .unwrap();
    let inbox = f
        .service
        .inbox(&ann(), &[SITE.to_string()], &InboxFilter::default())
        .await
        .unwrap();
    assert_eq!(inbox.len(), 1);
    let missed = f.service.visitor_left(SITE, "v1").await.unwrap();
    assert_eq!(
        missed.len(),
        1,
        "a trigger the visitor answered can be missed"
    );
}

#[tokio::test]
async fn missed_marking() {
    let f = fixture().await;
    let unanswered = start(&f, "v1", "hello?").await;
    let answered = start(&f, "v2", "hello?").await;
    f.service
        .post_agent_message(answered.id, &ann(), Content::text("hi"), None)
        .await
        .unwrap();
    let only_noted = start(&f, "v3", "hello?").await;
    f.service
        .add_note(only_noted.id, &ann(), "looking into it", None)
        .await
        .unwrap();
    let resolved = start(&f, "v4", "hello?").await;
    f.service
        .resolve(resolved.id, &agent(3, Role::Admin, &[]))
        .await
        .unwrap();

    let missed = f.service.visitor_left(SITE, "v1").await.unwrap();
    assert_eq!(missed.len(), 1);
    assert!(missed[0].missed);
    let last = all_messages(&f, unanswered.id).await.pop().unwrap();
    assert_eq!(
        last.body,
        MessageBody::Event {
            event: SystemEvent::Missed
        }
    );
    assert!(!last.visible_to_visitor());
    // Leaving again changes nothing more.
    assert!(f.service.visitor_left(SITE, "v1").await.unwrap().is_empty());
    assert!(f.service.visitor_left(SITE, "v2").await.unwrap().is_empty());
    assert_eq!(
        f.service.visitor_left(SITE, "v3").await.unwrap().len(),
        1,
        "a note is not an answer"
    );
    assert!(f.service.visitor_left(SITE, "v4").await.unwrap().is_empty());
    assert!(
        f.service
            .visitor_left(SITE, "nobody")
            .await
            .unwrap()
            .is_empty()
    );

    let missed_tab = f
        .service
        .inbox(
            &ann(),
            &[SITE.to_string()],
            &InboxFilter {
                tab: Some(InboxTab::Missed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<u64> = missed_tab.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![only_noted.id, unanswered.id]);
}

#[tokio::test]
async fn blocked_visitors_cannot_chat() {
    let f = fixture().await;
    let c = start(&f, "v1", "hi").await;
    let ip: IpAddr = "198.51.100.4".parse().unwrap();
    let mut events = f.service.subscribe();
    let block = f
        .service
        .block(SITE, "v1", Some(ip), &ann(), Some("spam"))
        .await
        .unwrap();
    assert_eq!(block.ip.as_deref(), Some("198.51.100.4"));
    assert_eq!(block.by, 1);
    assert!(matches!(
        events.try_recv().unwrap(),
        ConversationEvent::BlockChanged { blocked: true, .. }
    ));

    assert!(f.service.is_blocked(SITE, "v1", None));
    assert!(f.service.is_blocked(SITE, "someone-else", Some(ip)));
    let mapped: IpAddr = "::ffff:198.51.100.4".parse().unwrap();
    assert!(f.service.is_blocked(SITE, "someone-else", Some(mapped)));
    assert!(!f.service.is_blocked(OTHER_SITE, "v1", Some(ip)));
    assert!(!f.service.is_blocked(SITE, "v2", None));

    let blocked = |r: Result<AppendOutcome, ConversationError>| {
        assert!(matches!(r, Err(ConversationError::Blocked)), "{r:?}");
    };
    blocked(
        f.service
            .post_visitor_message(c.id, visitor("v1"), Content::text("let me in"), None)
            .await,
    );
    blocked(
        f.service
            .start_by_visitor(visitor("v1"), "new chat", None, StartDetails::default())
            .await,
    );
    blocked(
        f.service
            .start_by_visitor(
                visitor("fresh-id").with_ip(Some(ip)),
                "new id, same address",
                None,
                StartDetails::default(),
            )
            .await,
    );
    blocked(
        f.service
            .start_by_trigger(visitor("v1"), 1, "Bot", "hi", StartDetails::default())
            .await,
    );
    assert_eq!(
        f.service
            .start_by_visitor(visitor("v1"), "x", None, StartDetails::default())
            .await
            .unwrap_err()
            .to_string(),
        "you cannot chat on this site"
    );
    let last = all_messages(&f, c.id).await.pop().unwrap();
    assert_eq!(
        last.body,
        MessageBody::Event {
            event: SystemEvent::VisitorBlocked
        }
    );
    assert_eq!(f.service.blocks(SITE, &ann()).await.unwrap(), vec![block]);

    // Blocks survive a restart: the cache is loaded at start.
    let restarted =
        Conversations::start(Arc::clone(f.service.store()), f.clock.clone(), f.dir.path())
            .await
            .unwrap();
    assert!(restarted.is_blocked(SITE, "v1", None));
    assert!(restarted.is_blocked(SITE, "x", Some(ip)));

    assert!(f.service.unblock(SITE, "v1", &ann()).await.unwrap());
    assert!(!f.service.unblock(SITE, "v1", &ann()).await.unwrap());
    assert!(!f.service.is_blocked(SITE, "v1", Some(ip)));
    f.service
        .post_visitor_message(c.id, visitor("v1"), Content::text("thanks"), None)
        .await
        .unwrap();
    let err = f
        .service
        .block(
            SITE,
            "v1",
            None,
            &agent(9, Role::Agent, &[OTHER_SITE]),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Forbidden(_)), "{err:?}");
}

#[tokio::test]
async fn card_numbers_are_masked_before_storage() {
    let f = fixture().await;
    let outcome = f
        .service
        .start_by_visitor(
            visitor("v1"),
            "my card is 4111 1111 1111 1111 exp 12/27",
            None,
            StartDetails {
                subject: Some("pay with 5500-0000-0000-0004".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let masked = "my card is **** **** **** 1111 exp 12/27";
    assert_eq!(texts(&[outcome.message]), [format!("text:{masked}")]);
    let c = f
        .service
        .conversation(outcome.conversation.id)
        .await
        .unwrap();
    assert_eq!(c.last_message_preview.as_deref(), Some(masked));
    assert_eq!(c.subject.as_deref(), Some("pay with ****-****-****-0004"));
    f.service
        .add_note(c.id, &ann(), "card 4111111111111111 declined", None)
        .await
        .unwrap();
    let stored = all_messages(&f, c.id).await;
    assert_eq!(texts(&stored)[0], format!("text:{masked}"));
    assert_eq!(texts(&stored)[1], "note:card ************1111 declined");
    // Nothing in the database file holds the number in the clear.
    drop(stored);
    let bytes = std::fs::read(f.dir.path().join(crate::DB_FILE_NAME)).unwrap();
    let needle = b"4111 1111 1111 1111";
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test]
async fn text_limits_table() {
    let f = fixture().await;
    let c = start(&f, "v1", "hi").await;
    let ok_max = "a".repeat(MAX_TEXT_CHARS);
    let too_long = "a".repeat(MAX_TEXT_CHARS + 1);
    let padded_max = format!("  {}  ", "é".repeat(MAX_TEXT_CHARS));
    let cases: &[(&str, bool)] = &[
        ("", false),
        ("   \n\t ", false),
        ("\u{0}\u{7}", false),
        ("x", true),
        (&ok_max, true),
        (&padded_max, true),
        (&too_long, false),
    ];
    for (text, ok) in cases {
        let result = f
            .service
            .post_visitor_message(c.id, visitor("v1"), Content::text(*text), None)
            .await;
        assert_eq!(result.is_ok(), *ok, "{} chars: {result:?}", text.len());
        if let Err(err) = result {
            assert!(matches!(err, ConversationError::Invalid(_)), "{err:?}");
        }
    }
    let err = f
        .service
        .post_visitor_message(c.id, visitor("v1"), Content::text(""), None)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "a message cannot be empty");
    let err = f
        .service
        .post_visitor_message(c.id, visitor("v1"), Content::Text(too_long), None)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "a message can be at most 5000 characters");
    // Line breaks survive, other control characters do not.
    let posted = f
        .service
        .post_visitor_message(c.id, visitor("v1"), Content::text("a\nb\u{7}c"), None)
        .await
        .unwrap();
    assert_eq!(texts(&[posted.message]), ["text:a\nbc"]);
}

/// A well-formed credential: 32 bytes (a pattern per `seed`) as unpadded base64url.
fn secret(seed: u8) -> String {
    let bytes: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed))
        .collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn visitor_credentials() {
    let f = fixture().await;
    let token = secret(1);
    assert_eq!(token.len(), VISITOR_CREDENTIAL_CHARS);
    let issue = |visitor_id: &'static str, token: String| {
        let service = &f.service;
        async move {
            service
                .issue_visitor_credential(VisitorRef::new(SITE, visitor_id), &token)
                .await
        }
    };
    assert_eq!(
        issue("v1", token.clone()).await.unwrap(),
        CredentialIssue::Created
    );
    assert_eq!(
        issue("v1", token.clone()).await.unwrap(),
        CredentialIssue::Repeated,
        "the same secret again (an answer that was lost) is accepted"
    );
    let other = secret(2);
    assert_eq!(
        issue("v1", other.clone()).await.unwrap(),
        CredentialIssue::Conflict,
        "a different secret never replaces the stored one"
    );
    assert_eq!(
        issue("v2", other.clone()).await.unwrap(),
        CredentialIssue::Created
    );
    // Only the hash is stored, and the conflicting secret changed nothing.
    let stored = f
        .service
        .store()
        .visitor_credential(SITE, "v1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, hash_token(&token));

    let verify = |site: &'static str, visitor_id: &'static str, token: String| {
        let service = &f.service;
        async move {
            service
                .verify_visitor_credential(site, visitor_id, &token)
                .await
                .unwrap()
        }
    };
    assert!(verify(SITE, "v1", token.clone()).await);
    assert!(verify(SITE, "v1", token.clone()).await, "cached path");
    assert!(
        !verify(SITE, "v1", other.clone()).await,
        "another visitor's token"
    );
    assert!(!verify(SITE, "v2", token.clone()).await);
    assert!(!verify(OTHER_SITE, "v1", token.clone()).await);
    assert!(!verify(SITE, "v1", String::new()).await);
    assert!(!verify(SITE, "v1", format!("{token}x")).await);
    assert!(!verify(SITE, "v1", "a".repeat(10_000)).await);
    assert!(!verify(SITE, "never-issued", token.clone()).await);

    // A fresh service (a restart, empty cache) decides from the store.
    let restarted =
        Conversations::start(Arc::clone(f.service.store()), f.clock.clone(), f.dir.path())
            .await
            .unwrap();
    assert!(
        restarted
            .verify_visitor_credential(SITE, "v2", &other)
            .await
            .unwrap()
    );
    assert_eq!(
        restarted
            .issue_visitor_credential(VisitorRef::new(SITE, "v1"), &token)
            .await
            .unwrap(),
        CredentialIssue::Repeated
    );
    assert_eq!(
        restarted
            .issue_visitor_credential(VisitorRef::new(SITE, "v2"), &token)
            .await
            .unwrap(),
        CredentialIssue::Conflict
    );
}

#[tokio::test]
async fn malformed_visitor_credentials_are_refused() {
    let f = fixture().await;
    let good = secret(3);
    let mut wrong_alphabet = good.clone();
    wrong_alphabet.replace_range(0..1, "+");
    // 43 characters whose last one carries bits beyond the 32 bytes: not canonical.
    let mut non_canonical = good[..42].to_string();
    non_canonical.push('B');
    let cases = [
        (String::new(), "got 0"),
        (good[..42].to_string(), "got 42"),
        (format!("{good}A"), "got 44"),
        (format!("{}=", &good[..42]), "base64url"),
        (wrong_alphabet, "base64url"),
        (non_canonical, "canonical"),
        ("é".repeat(22), "got 22"),
    ];
    for (credential, says) in cases {
        let error = f
            .service
            .issue_visitor_credential(VisitorRef::new(SITE, "v1"), &credential)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ConversationError::Invalid(message) if message.contains(says)),
            "{credential:?}: {error}"
        );
    }
    assert_eq!(
        f.service
            .store()
            .visitor_credential(SITE, "v1")
            .await
            .unwrap(),
        None,
        "nothing stored for a refused credential"
    );
    assert_eq!(
        f.service
            .issue_visitor_credential(VisitorRef::new(SITE, "v1"), &good)
            .await
            .unwrap(),
        CredentialIssue::Created
    );
}

#[tokio::test]
async fn blocked_visitors_get_no_credential() {
    let f = fixture().await;
    let address: IpAddr = "203.0.113.7".parse().unwrap();
    f.service
        .block(SITE, "v-bad", Some(address), &ann(), Some("spam"))
        .await
        .unwrap();
    let by_id = f
        .service
        .issue_visitor_credential(VisitorRef::new(SITE, "v-bad"), &secret(4))
        .await;
    assert!(
        matches!(by_id, Err(ConversationError::Blocked)),
        "{by_id:?}"
    );
    let same_address = VisitorRef {
        site: SITE,
        visitor_id: "v-new",
        ip: Some(address),
    };
    let by_address = f
        .service
        .issue_visitor_credential(same_address, &secret(5))
        .await;
    assert!(
        matches!(by_address, Err(ConversationError::Blocked)),
        "{by_address:?}"
    );
    for visitor_id in ["v-bad", "v-new"] {
        assert_eq!(
            f.service
                .store()
                .visitor_credential(SITE, visitor_id)
                .await
                .unwrap(),
            None,
            "{visitor_id}: nothing stored"
        );
    }
    // The block is per site: the same visitor elsewhere, or from another address, is fine.
    assert_eq!(
        f.service
            .issue_visitor_credential(VisitorRef::new(OTHER_SITE, "v-bad"), &secret(4))
            .await
            .unwrap(),
        CredentialIssue::Created
    );
    assert_eq!(
        f.service
            .issue_visitor_credential(VisitorRef::new(SITE, "v-new"), &secret(5))
            .await
            .unwrap(),
        CredentialIssue::Created
    );
}

#[tokio::test]
async fn racing_requests_for_one_visitor_store_one_credential() {
    let f = fixture().await;
    // Eight requests at once, two secrets: one secret wins; its requests are Created or
    // Repeated, the other secret's are all Conflict.
    let (a, b) = (secret(6), secret(7));
    let run = |token: &String| {
        let (service, token) = (&f.service, token.clone());
        async move {
            let outcome = service
                .issue_visitor_credential(VisitorRef::new(SITE, "v-race"), &token)
                .await
                .unwrap();
            (token, outcome)
        }
    };
    // Each request reads "none stored" before the first write commits, so most of them lose
    // the store's insert-if-absent and decide by comparing with the winner's hash.
    let (o1, o2, o3, o4, o5, o6, o7, o8) = tokio::join!(
        run(&a),
        run(&b),
        run(&a),
        run(&b),
        run(&a),
        run(&b),
        run(&a),
        run(&b)
    );
    let outcomes = [o1, o2, o3, o4, o5, o6, o7, o8];
    let stored = f
        .service
        .store()
        .visitor_credential(SITE, "v-race")
        .await
        .unwrap()
        .unwrap();
    let winner = if stored == hash_token(&a) { &a } else { &b };
    assert_eq!(stored, hash_token(winner));
    let created = outcomes
        .iter()
        .filter(|(_, outcome)| *outcome == CredentialIssue::Created)
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    for (token, outcome) in &outcomes {
        if token == winner {
            assert_ne!(*outcome, CredentialIssue::Conflict, "{outcomes:?}");
        } else {
            assert_eq!(*outcome, CredentialIssue::Conflict, "{outcomes:?}");
        }
    }
}

#[tokio::test]
async fn attachments_are_served_only_to_the_parties() {
    let f = fixture().await;
    let c = start(&f, "v1", "see screenshot").await;
    let meta = f
        .service
        .upload_attachment(
            c.id,
            Party::Visitor(visitor("v1")),
            "../../screen shot.png",
            "text/html",
            PNG.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(meta.name, "screen shot.png");
    assert!(meta.image);
    assert_eq!(meta.mime, "image/png");
    let posted = f
        .service
        .post_visitor_message(
            c.id,
            visitor("v1"),
            Content::Attachment {
                id: meta.id.clone(),
                text: Some("here".into()),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        posted.message.body,
        MessageBody::Attachment {
            attachment: meta.clone(),
            text: Some("here".into())
        }
    );
    assert_eq!(
        posted.conversation.last_message_preview.as_deref(),
        Some("here")
    );

    let (read_meta, bytes) = f
        .service
        .attachment(c.id, &meta.id, Party::Agent(&ann()))
        .await
        .unwrap();
    assert_eq!((read_meta, bytes.as_slice()), (meta.clone(), PNG));
    assert!(
        f.service
            .attachment(c.id, &meta.id, Party::Visitor(visitor("v1")))
            .await
            .is_ok()
    );
    let err = f
        .service
        .attachment(c.id, &meta.id, Party::Visitor(visitor("v2")))
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::NotFound(_)), "{err:?}");
    let err = f
        .service
        .attachment(
            c.id,
            &meta.id,
            Party::Agent(&agent(9, Role::Agent, &[OTHER_SITE])),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Forbidden(_)), "{err:?}");
    let err = f
        .service
        .attachment(c.id, "../porchlight.redb", Party::Agent(&ann()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::NotFound(_)), "{err:?}");

    // An attachment of another conversation cannot be posted here.
    let other = start(&f, "v2", "hi").await;
    let err = f
        .service
        .post_visitor_message(
            other.id,
            visitor("v2"),
            Content::Attachment {
                id: meta.id.clone(),
                text: None,
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Invalid(_)), "{err:?}");
    let err = f
        .service
        .upload_attachment(
            c.id,
            Party::Visitor(visitor("v2")),
            "x.txt",
            "text/plain",
            b"x".to_vec(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::NotFound(_)), "{err:?}");
    let err = f
        .service
        .upload_attachment(
            c.id,
            Party::Agent(&ann()),
            "big.bin",
            "application/octet-stream",
            vec![0; crate::MAX_ATTACHMENT_BYTES + 1],
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "attachment is larger than 2 MB");
}

#[tokio::test]
async fn tags_rating_and_read_marks() {
    let f = fixture().await;
    let c = start(&f, "v1", "hi").await;
    let tags = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let tagged = f
        .service
        .set_tags(
            c.id,
            &ann(),
            &tags(&[" VIP ", "billing", "vip", "", "Refund"]),
        )
        .await
        .unwrap();
    assert_eq!(tagged.tags, ["vip", "billing", "refund"]);
    let too_long = "x".repeat(MAX_TAG_CHARS + 1);
    let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
    for bad in [tags(&[&too_long]), many] {
        let err = f.service.set_tags(c.id, &ann(), &bad).await.unwrap_err();
        assert!(matches!(err, ConversationError::Invalid(_)), "{err:?}");
    }
    let exact: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
    assert_eq!(
        f.service
            .set_tags(c.id, &ann(), &exact)
            .await
            .unwrap()
            .tags
            .len(),
        MAX_TAGS
    );

    // Rating: only once resolved, 1 to 5, and again replaces.
    let err = f
        .service
        .rate(c.id, visitor("v1"), 5, None)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "only a resolved conversation can be rated");
    f.service
        .resolve(c.id, &agent(3, Role::Owner, &[]))
        .await
        .unwrap();
    for score in [0, 6] {
        let err = f
            .service
            .rate(c.id, visitor("v1"), score, None)
            .await
            .unwrap_err();
        assert!(matches!(err, ConversationError::Invalid(_)), "{err:?}");
    }
    let err = f
        .service
        .rate(c.id, visitor("v2"), 5, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::NotFound(_)), "{err:?}");
    f.service
        .rate(c.id, visitor("v1"), 2, Some("slow"))
        .await
        .unwrap();
    f.clock.advance_ms(1);
    let rated = f
        .service
        .rate(c.id, visitor("v1"), 5, Some("  actually great  "))
        .await
        .unwrap();
    assert_eq!(
        rated.rating,
        Some(Rating {
            score: 5,
            comment: Some("actually great".into()),
            at_ms: T0 + 1
        })
    );
    assert_eq!(
        f.service
            .store()
            .conversation(c.id)
            .await
            .unwrap()
            .unwrap()
            .rating,
        rated.rating
    );

    // Read marks: capped at the newest message, never backwards.
    let last = rated.last_seq;
    let read = f
        .service
        .mark_read(c.id, Party::Agent(&ann()), 1_000)
        .await
        .unwrap();
    assert_eq!(read.agent_read(1), last);
    let read = f
        .service
        .mark_read(c.id, Party::Agent(&ann()), 1)
        .await
        .unwrap();
    assert_eq!(read.agent_read(1), last);
    let read = f
        .service
        .mark_read(c.id, Party::Visitor(visitor("v1")), 2)
        .await
        .unwrap();
    assert_eq!(read.visitor_read_seq, 2);
    let err = f
        .service
        .mark_read(c.id, Party::Visitor(visitor("v2")), 2)
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn inbox_tabs_filters_and_counts() {
    let f = fixture().await;
    let me = ann();
    let sites = [SITE.to_string()];
    // unassigned, with a tag and a page
    let unassigned = f
        .service
        .start_by_visitor(
            visitor("v1").with_ip(Some("203.0.113.1".parse().unwrap())),
            "do you ship to Norway?",
            None,
            StartDetails {
                page_url: Some("https://shop.example/shipping".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .conversation;
    f.service
        .set_tags(unassigned.id, &me, &["shipping".to_string()])
        .await
        .unwrap();
    f.clock.advance_ms(1_000);
    // mine
    let mine = start(&f, "v2", "price of the blue one?").await;
    f.service.open_by_agent(mine.id, &me).await.unwrap();
    f.service
        .add_note(mine.id, &me, "offer the zebra discount", None)
        .await
        .unwrap();
    f.clock.advance_ms(1_000);
    // others'
    let others = start(&f, "v3", "refund please").await;
    f.service
        .post_agent_message(others.id, &bob(), Content::text("sure"), None)
        .await
        .unwrap();
    f.clock.advance_ms(1_000);
    // missed
    let missed = start(&f, "v4", "hello??").await;
    f.service.visitor_left(SITE, "v4").await.unwrap();
    f.clock.advance_ms(1_000);
    // resolved and rated
    let resolved = start(&f, "v5", "thanks").await;
    f.service.open_by_agent(resolved.id, &me).await.unwrap();
    f.service.resolve(resolved.id, &me).await.unwrap();
    f.service
        .rate(resolved.id, visitor("v5"), 4, None)
        .await
        .unwrap();
    // another site's conversation never shows up
    f.service
        .start_by_visitor(
            VisitorRef::new(OTHER_SITE, "v1"),
            "elsewhere",
            None,
            StartDetails::default(),
        )
        .await
        .unwrap();

    let ids = |list: Vec<Conversation>| list.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let query = |filter: InboxFilter| {
        let service = &f.service;
        let me = me.clone();
        let sites = sites.clone();
        async move { ids(service.inbox(&me, &sites, &filter).await.unwrap()) }
    };
    let tab = |tab: InboxTab| InboxFilter {
        tab: Some(tab),
        ..Default::default()
    };
    assert_eq!(
        query(InboxFilter::default()).await,
        vec![resolved.id, missed.id, others.id, mine.id, unassigned.id],
        "newest activity first"
    );
    assert_eq!(query(tab(InboxTab::Mine)).await, vec![mine.id]);
    assert_eq!(query(tab(InboxTab::Others)).await, vec![others.id]);
    assert_eq!(query(tab(InboxTab::Unassigned)).await, vec![unassigned.id]);
    assert_eq!(query(tab(InboxTab::Missed)).await, vec![missed.id]);
    assert_eq!(query(tab(InboxTab::Resolved)).await, vec![resolved.id]);
    let filter_cases: Vec<(&str, InboxFilter, Vec<u64>)> = vec![
        (
            "agent",
            InboxFilter {
                agent_id: Some(2),
                ..Default::default()
            },
            vec![others.id],
        ),
        (
            "tag",
            InboxFilter {
                tag: Some("Shipping".into()),
                ..Default::default()
            },
            vec![unassigned.id],
        ),
        (
            "rating",
            InboxFilter {
                rating: Some(4),
                ..Default::default()
            },
            vec![resolved.id],
        ),
        (
            "page url",
            InboxFilter {
                page_url: Some("/SHIPPING".into()),
                ..Default::default()
            },
            vec![unassigned.id],
        ),
        (
            "ip",
            InboxFilter {
                ip: Some("203.0.113.1".into()),
                ..Default::default()
            },
            vec![unassigned.id],
        ),
        (
            "date range",
            InboxFilter {
                from_ms: Some(T0 + 1_000),
                to_ms: Some(T0 + 3_000),
                ..Default::default()
            },
            vec![others.id, mine.id],
        ),
        (
            "text in a message",
            InboxFilter {
                text: Some("NORWAY".into()),
                ..Default::default()
            },
            vec![unassigned.id],
        ),
        (
            "text in a note",
            InboxFilter {
                text: Some("zebra".into()),
                ..Default::default()
            },
            vec![mine.id],
        ),
        (
            "text nowhere",
            InboxFilter {
                text: Some("unicorn".into()),
                ..Default::default()
            },
            vec![],
        ),
        (
            "limit",
            InboxFilter {
                limit: Some(2),
                ..Default::default()
            },
            vec![resolved.id, missed.id],
        ),
        (
            "tab and text",
            InboxFilter {
                tab: Some(InboxTab::Others),
                text: Some("refund".into()),
                ..Default::default()
            },
            vec![others.id],
        ),
    ];
    for (name, filter, expected) in filter_cases {
        assert_eq!(query(filter).await, expected, "{name}");
    }

    let counts = f.service.unread_counts(&me, &sites).await.unwrap();
    assert_eq!(
        counts.mine,
        TabCount {
            total: 1,
            unread: 0
        },
        "opening reads nothing, but the note marked it read"
    );
    assert_eq!(
        counts.others,
        TabCount {
            total: 1,
            unread: 1
        }
    );
    assert_eq!(
        counts.unassigned,
        TabCount {
            total: 1,
            unread: 1
        }
    );
    assert_eq!(
        counts.missed,
        TabCount {
            total: 1,
            unread: 1
        }
    );
    assert_eq!(
        counts.resolved,
        TabCount {
            total: 1,
            unread: 1
        }
    );
    f.service
        .mark_read(others.id, Party::Agent(&me), u64::MAX)
        .await
        .unwrap();
    let counts = f.service.unread_counts(&me, &sites).await.unwrap();
    assert_eq!(counts.get(InboxTab::Others).unread, 0);

    let outsider = agent(9, Role::Agent, &[OTHER_SITE]);
    let err = f
        .service
        .inbox(&outsider, &sites, &InboxFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Forbidden(_)), "{err:?}");
    assert!(f.service.unread_counts(&outsider, &sites).await.is_err());
}

#[tokio::test]
async fn events_are_published_after_the_write() {
    let f = fixture().await;
    let mut events = f.service.subscribe();
    let c = start(&f, "v1", "hi").await;
    let store = Arc::clone(f.service.store());
    let check_durable = |event: ConversationEvent| {
        let store = Arc::clone(&store);
        async move {
            if let ConversationEvent::MessageAdded {
                conversation,
                message,
            } = &event
            {
                let stored = store
                    .messages(conversation.id, message.seq - 1, 1)
                    .await
                    .unwrap();
                assert_eq!(stored.first(), Some(&**message), "published before stored");
                let record = store.conversation(conversation.id).await.unwrap().unwrap();
                assert!(record.last_seq >= message.seq);
            }
            event
        }
    };
    let first = check_durable(events.try_recv().unwrap()).await;
    match &first {
        ConversationEvent::MessageAdded {
            conversation,
            message,
        } => {
            assert_eq!(conversation.id, c.id);
            assert_eq!(message.seq, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(first.site(), SITE);
    assert_eq!(first.visitor_id(), "v1");
    assert_eq!(first.conversation_id(), Some(c.id));

    f.service
        .post_agent_message(c.id, &ann(), Content::text("hello"), Some("k"))
        .await
        .unwrap();
    let mut seqs = Vec::new();
    for _ in 0..3 {
        if let ConversationEvent::MessageAdded {
            conversation,
            message,
        } = check_durable(events.try_recv().unwrap()).await
        {
            assert_eq!(
                conversation.last_seq, 4,
                "every event carries the final record"
            );
            seqs.push(message.seq);
        }
    }
    assert_eq!(seqs, vec![2, 3, 4]);
    // A duplicate publishes nothing.
    f.service
        .post_agent_message(c.id, &ann(), Content::text("hello"), Some("k"))
        .await
        .unwrap();
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));

    f.service
        .set_tags(c.id, &ann(), &["vip".to_string()])
        .await
        .unwrap();
    match events.try_recv().unwrap() {
        ConversationEvent::ConversationChanged { conversation } => {
            assert_eq!(conversation.tags, ["vip"]);
        }
        other => panic!("unexpected {other:?}"),
    }

    f.service
        .typing(c.id, Party::Visitor(visitor("v1")), true)
        .await
        .unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        ConversationEvent::Typing {
            conversation_id: c.id,
            site: SITE.into(),
            visitor_id: "v1".into(),
            who: Author::Visitor,
            typing: true,
        }
    );
    assert_eq!(
        all_messages(&f, c.id).await.len(),
        4,
        "typing is not stored"
    );
    let err = f
        .service
        .typing(c.id, Party::Visitor(visitor("v2")), true)
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::NotFound(_)), "{err:?}");
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));

    // A failed write publishes nothing.
    let err = f
        .service
        .post_agent_message(
            c.id,
            &agent(9, Role::Agent, &[OTHER_SITE]),
            Content::text("x"),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Forbidden(_)));
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test]
async fn visitors_only_see_their_own_conversations() {
    let f = fixture().await;
    let mine = start(&f, "v1", "mine").await;
    let theirs = start(&f, "v2", "theirs").await;
    let me = Party::Visitor(visitor("v1"));
    assert_eq!(
        f.service.conversation_for(mine.id, me).await.unwrap().id,
        mine.id
    );
    for result in [
        f.service.conversation_for(theirs.id, me).await.map(|_| ()),
        f.service.messages(theirs.id, me, 0, 10).await.map(|_| ()),
        f.service
            .post_visitor_message(theirs.id, visitor("v1"), Content::text("hi"), None)
            .await
            .map(|_| ()),
        f.service
            .conversation_for(mine.id, Party::Visitor(VisitorRef::new(OTHER_SITE, "v1")))
            .await
            .map(|_| ()),
        f.service.conversation_for(999, me).await.map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(ConversationError::NotFound(_))),
            "{result:?}"
        );
    }
    let err = f
        .service
        .conversations_of_visitor(SITE, "v2", me)
        .await
        .unwrap_err();
    assert!(matches!(err, ConversationError::Forbidden(_)), "{err:?}");
    let history = f
        .service
        .conversations_of_visitor(SITE, "v2", Party::Agent(&ann()))
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    // The untouched conversation still has only its own message.
    assert_eq!(texts(&all_messages(&f, theirs.id).await), ["text:theirs"]);
}
