//! The records of a conversation, and the bookkeeping rules every store applies when a
//! message is appended ([`Conversation::record_message`]).
//!
//! Everything here is plain data that serializes to JSON, like the rest of the store's
//! records. Fields added after the first release carry `#[serde(default)]` so records written
//! earlier still decode.

use serde::{Deserialize, Serialize};

use crate::attachments::AttachmentMeta;

/// Inbox previews are cut to this many characters.
pub const PREVIEW_CHARS: usize = 140;

/// Whether a conversation is still being worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    Open,
    Resolved,
}

/// Who started a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConversationOrigin {
    /// The visitor wrote first, from the widget.
    Visitor,
    /// An agent opened it from the live panel or the visitor card.
    Agent { agent_id: u64 },
    /// A trigger's automatic message (issue 4). The fields after `trigger_id` came later and
    /// default when absent, so earlier records still decode.
    Trigger {
        trigger_id: u64,
        /// The A/B variant sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
        /// Whether the widget should open itself with the message.
        #[serde(default, skip_serializing_if = "is_false")]
        open_widget: bool,
        /// A test-fire from the console: never counted in the trigger's statistics.
        #[serde(default, skip_serializing_if = "is_false")]
        test: bool,
    },
}

impl ConversationOrigin {
    /// The origin of trigger `trigger_id`'s message with no variant, as sent by
    /// [`crate::Conversations::start_by_trigger`].
    pub fn trigger(trigger_id: u64) -> ConversationOrigin {
        ConversationOrigin::Trigger {
            trigger_id,
            variant: None,
            open_widget: false,
            test: false,
        }
    }
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

/// The visitor's rating of a resolved conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// 1 to 5.
    pub score: u8,
    pub comment: Option<String>,
    pub at_ms: i64,
}

/// What the visitor typed into the optional pre-chat form, besides the subject and the first
/// message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreChat {
    pub name: Option<String>,
    pub email: Option<String>,
}

/// A chat between one visitor of one site and any number of agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: u64,
    pub site: String,
    pub visitor_id: String,
    pub state: ConversationState,
    pub origin: ConversationOrigin,
    /// The agent responsible for it: the first agent who opened, joined or answered it.
    pub assigned_agent: Option<u64>,
    /// Agents currently in the conversation.
    #[serde(default)]
    pub participants: Vec<u64>,
    /// Agents invited by a colleague who have not joined yet.
    #[serde(default)]
    pub invited: Vec<u64>,
    pub created_ms: i64,
    /// The last change of any kind (message, state, tags, read marks).
    pub updated_ms: i64,
    pub resolved_ms: Option<i64>,
    /// When an agent first wrote a message the visitor sees.
    pub first_agent_reply_ms: Option<i64>,
    /// The visitor left before any agent answered.
    #[serde(default)]
    pub missed: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    pub rating: Option<Rating>,
    /// The seq of the newest message; messages are numbered 1, 2, 3… without gaps.
    pub last_seq: u64,
    /// The newest seq the visitor has read.
    #[serde(default)]
    pub visitor_read_seq: u64,
    /// (agent id, newest seq that agent has read).
    #[serde(default)]
    pub agent_read_seq: Vec<(u64, u64)>,
    pub subject: Option<String>,
    /// The page the visitor was on when the conversation started.
    pub page_url: Option<String>,
    /// The visitor's address when the conversation started, for the inbox's IP filter.
    #[serde(default)]
    pub visitor_ip: Option<String>,
    #[serde(default)]
    pub prechat: Option<PreChat>,
    /// The start of the newest text or attachment message, at most 140 characters, already
    /// masked. Never taken from a note or a system event.
    pub last_message_preview: Option<String>,
    /// When the newest text or attachment message was written (the creation time before
    /// there is one): the inbox's "newest activity" order.
    pub last_message_ms: i64,
    /// The seq of the visitor's newest message (0 before the first): an agent has unread
    /// messages when it is above that agent's read mark.
    #[serde(default)]
    pub last_visitor_seq: u64,
    /// When the visitor last wrote; `None` while they never have (a trigger nobody answered).
    #[serde(default)]
    pub last_visitor_message_ms: Option<i64>,
}

impl Conversation {
    pub fn is_open(&self) -> bool {
        self.state == ConversationState::Open
    }

    /// The newest seq `agent_id` has read (0 if never).
    pub fn agent_read(&self, agent_id: u64) -> u64 {
        self.agent_read_seq
            .iter()
            .find(|(id, _)| *id == agent_id)
            .map_or(0, |(_, seq)| *seq)
    }

    /// Raises `agent_id`'s read mark to `seq` (never lowers it). Returns whether it moved.
    pub fn set_agent_read(&mut self, agent_id: u64, seq: u64) -> bool {
        match self
            .agent_read_seq
            .iter_mut()
            .find(|(id, _)| *id == agent_id)
        {
            Some((_, read)) if *read >= seq => false,
            Some((_, read)) => {
                *read = seq;
                true
            }
            None => {
                self.agent_read_seq.push((agent_id, seq));
                true
            }
        }
    }

    /// Whether the visitor wrote something `agent_id` has not read yet.
    pub fn unread_for_agent(&self, agent_id: u64) -> bool {
        self.last_visitor_seq > self.agent_read(agent_id)
    }

    pub fn has_participant(&self, agent_id: u64) -> bool {
        self.participants.contains(&agent_id)
    }

    /// The bookkeeping that follows appending `message`, applied by the store inside the
    /// append's transaction so that it can never disagree with the messages:
    ///
    /// - `last_seq`, `updated_ms`;
    /// - for text and attachment messages the visitor sees: the preview and
    ///   `last_message_ms`;
    /// - for the visitor's messages: `last_visitor_seq`, `last_visitor_message_ms`;
    /// - the author's read mark moves to the message (whoever writes has read everything
    ///   before it);
    /// - an agent's first text or attachment sets `first_agent_reply_ms`.
    pub fn record_message(&mut self, message: &Message) {
        self.last_seq = self.last_seq.max(message.seq);
        self.updated_ms = self.updated_ms.max(message.created_ms);
        let content = message.body.is_content();
        if content {
            self.last_message_preview = message.preview();
            self.last_message_ms = self.last_message_ms.max(message.created_ms);
        }
        match &message.author {
            Author::Visitor => {
                self.visitor_read_seq = self.visitor_read_seq.max(message.seq);
                if content {
                    self.last_visitor_seq = message.seq;
                    self.last_visitor_message_ms = Some(message.created_ms);
                }
            }
            Author::Agent { id, .. } => {
                self.set_agent_read(*id, message.seq);
                if content && self.first_agent_reply_ms.is_none() {
                    self.first_agent_reply_ms = Some(message.created_ms);
                }
            }
            Author::Bot { .. } | Author::System => {}
        }
    }
}

/// A conversation before the store has given it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewConversation {
    pub site: String,
    pub visitor_id: String,
    pub origin: ConversationOrigin,
    pub assigned_agent: Option<u64>,
    pub participants: Vec<u64>,
    pub created_ms: i64,
    pub subject: Option<String>,
    pub page_url: Option<String>,
    pub visitor_ip: Option<String>,
    pub prechat: Option<PreChat>,
}

impl NewConversation {
    /// The stored conversation this becomes once it has an id: open, with no messages yet.
    pub fn with_id(self, id: u64) -> Conversation {
        Conversation {
            id,
            site: self.site,
            visitor_id: self.visitor_id,
            state: ConversationState::Open,
            origin: self.origin,
            assigned_agent: self.assigned_agent,
            participants: self.participants,
            invited: Vec::new(),
            created_ms: self.created_ms,
            updated_ms: self.created_ms,
            resolved_ms: None,
            first_agent_reply_ms: None,
            missed: false,
            tags: Vec::new(),
            rating: None,
            last_seq: 0,
            visitor_read_seq: 0,
            agent_read_seq: Vec::new(),
            subject: self.subject,
            page_url: self.page_url,
            visitor_ip: self.visitor_ip,
            prechat: self.prechat,
            last_message_preview: None,
            last_message_ms: self.created_ms,
            last_visitor_seq: 0,
            last_visitor_message_ms: None,
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Author {
    Visitor,
    /// The name is kept as it was when the message was written.
    Agent {
        id: u64,
        name: String,
    },
    /// An automatic sender (a trigger), under the display name it was configured with.
    Bot {
        name: String,
    },
    /// System events.
    System,
}

/// Something that happened in a conversation, recorded as a message so that both sides see
/// it in order with the chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SystemEvent {
    AgentJoined {
        agent_id: u64,
        name: String,
    },
    AgentLeft {
        agent_id: u64,
        name: String,
    },
    AgentInvited {
        agent_id: u64,
        name: String,
        by: u64,
    },
    Assigned {
        agent_id: u64,
        name: String,
    },
    Resolved {
        by: Option<u64>,
    },
    Reopened,
    Rated {
        score: u8,
    },
    Missed,
    VisitorBlocked,
}

impl SystemEvent {
    /// Whether the visitor is shown this event. They see agents come and go and the
    /// conversation close and reopen; the team's internal workflow (assignment,
    /// invitations, missed and blocked marks) and their own rating are not echoed to them.
    pub fn visible_to_visitor(&self) -> bool {
        match self {
            SystemEvent::AgentJoined { .. }
            | SystemEvent::AgentLeft { .. }
            | SystemEvent::Resolved { .. }
            | SystemEvent::Reopened => true,
            SystemEvent::AgentInvited { .. }
            | SystemEvent::Assigned { .. }
            | SystemEvent::Rated { .. }
            | SystemEvent::Missed
            | SystemEvent::VisitorBlocked => false,
        }
    }
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageBody {
    Text {
        text: String,
    },
    /// An internal note between agents. The visitor never receives it.
    Note {
        text: String,
    },
    Attachment {
        attachment: AttachmentMeta,
        /// An optional caption.
        text: Option<String>,
    },
    Event {
        event: SystemEvent,
    },
}

impl MessageBody {
    /// Text and attachment messages: what the parties wrote to each other, as opposed to
    /// notes and events.
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            MessageBody::Text { .. } | MessageBody::Attachment { .. }
        )
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub conversation_id: u64,
    /// 1, 2, 3… per conversation, without gaps; the order of the conversation.
    pub seq: u64,
    pub author: Author,
    pub body: MessageBody,
    pub created_ms: i64,
    /// The sender's idempotency key: a retry with the same key returns this message instead
    /// of adding another.
    pub client_id: Option<String>,
}

impl Message {
    /// Whether the visitor may receive this message: everything but notes and the events
    /// [`SystemEvent::visible_to_visitor`] keeps internal.
    pub fn visible_to_visitor(&self) -> bool {
        match &self.body {
            MessageBody::Text { .. } | MessageBody::Attachment { .. } => true,
            MessageBody::Note { .. } => false,
            MessageBody::Event { event } => event.visible_to_visitor(),
        }
    }

    /// The inbox preview of a text or attachment message: whitespace runs folded to one
    /// space, at most [`PREVIEW_CHARS`] characters (an ellipsis marks a cut). `None` for
    /// notes and events, which never become a preview.
    pub fn preview(&self) -> Option<String> {
        let text = match &self.body {
            MessageBody::Text { text } => text.clone(),
            MessageBody::Attachment {
                text: Some(text), ..
            } if !text.trim().is_empty() => text.clone(),
            MessageBody::Attachment { attachment, .. } => format!("📎 {}", attachment.name),
            MessageBody::Note { .. } | MessageBody::Event { .. } => return None,
        };
        let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if folded.chars().count() <= PREVIEW_CHARS {
            return Some(folded);
        }
        let mut cut: String = folded.chars().take(PREVIEW_CHARS - 1).collect();
        cut.truncate(cut.trim_end().len());
        cut.push('…');
        Some(cut)
    }

    /// The text of a text, note or attachment message, for search.
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            MessageBody::Text { text } | MessageBody::Note { text } => Some(text),
            MessageBody::Attachment { text, .. } => text.as_deref(),
            MessageBody::Event { .. } => None,
        }
    }
}

/// A message before the store has given it a seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    pub author: Author,
    pub body: MessageBody,
    pub created_ms: i64,
    /// An empty key counts as none.
    pub client_id: Option<String>,
}

impl NewMessage {
    /// A system event message.
    pub fn event(event: SystemEvent, created_ms: i64) -> Self {
        Self {
            author: Author::System,
            body: MessageBody::Event { event },
            created_ms,
            client_id: None,
        }
    }

    /// The idempotency key, if there is a non-empty one.
    pub fn key(&self) -> Option<&str> {
        self.client_id.as_deref().filter(|k| !k.is_empty())
    }

    /// The stored message this becomes at `seq` of `conversation_id`.
    pub fn into_message(self, conversation_id: u64, seq: u64) -> Message {
        let client_id = self.key().map(str::to_string);
        Message {
            conversation_id,
            seq,
            author: self.author,
            body: self.body,
            created_ms: self.created_ms,
            client_id,
        }
    }
}

/// One atomic change to a conversation: optionally a new record, and messages to append after
/// it, committed together and durably.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationWrite {
    pub conversation_id: u64,
    /// The conversation's new record, or `None` to keep the stored one. It must have been
    /// read with the stored `last_seq` (a store refuses it with a conflict otherwise, since a
    /// message was appended after it was read) and may not change the site or visitor. The
    /// appended messages then advance it through [`Conversation::record_message`].
    pub conversation: Option<Conversation>,
    pub messages: Vec<NewMessage>,
}

/// The result of [`crate::Store::write_conversation`].
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    /// The conversation as stored after the write.
    pub conversation: Conversation,
    /// The appended messages in seq order; with `duplicate`, the one earlier message whose
    /// client id a message of the write repeated.
    pub messages: Vec<Message>,
    /// A message's client id was already used in this conversation, so nothing was written.
    pub duplicate: bool,
}

/// The result of appending (or posting) one message.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    pub message: Message,
    /// The conversation as stored after the append.
    pub conversation: Conversation,
    /// The client id was already used: `message` is the earlier message, and nothing was
    /// written.
    pub duplicate: bool,
}

/// A visitor blocked on a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub visitor_id: Option<String>,
    /// An address blocked along with the visitor (`IpAddr`'s text form).
    pub ip: Option<String>,
    /// The agent who blocked.
    pub by: u64,
    pub at_ms: i64,
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(author: Author, body: MessageBody, seq: u64) -> Message {
        Message {
            conversation_id: 1,
            seq,
            author,
            body,
            created_ms: 100 * seq as i64,
            client_id: None,
        }
    }

    fn text(t: &str) -> MessageBody {
        MessageBody::Text { text: t.into() }
    }

    fn conversation() -> Conversation {
        NewConversation {
            site: "demo".into(),
            visitor_id: "v1".into(),
            origin: ConversationOrigin::Visitor,
            assigned_agent: None,
            participants: Vec::new(),
            created_ms: 50,
            subject: None,
            page_url: None,
            visitor_ip: None,
            prechat: None,
        }
        .with_id(1)
    }

    #[test]
    fn visibility_table() {
        let agent = || Author::Agent {
            id: 1,
            name: "A".into(),
        };
        let event = |e: SystemEvent| MessageBody::Event { event: e };
        let cases = [
            (text("hi"), true),
            (
                MessageBody::Note {
                    text: "psst".into(),
                },
                false,
            ),
            (
                MessageBody::Attachment {
                    attachment: AttachmentMeta {
                        id: "x".into(),
                        name: "a.png".into(),
                        mime: "image/png".into(),
                        size: 1,
                        image: true,
                    },
                    text: None,
                },
                true,
            ),
            (
                event(SystemEvent::AgentJoined {
                    agent_id: 1,
                    name: "A".into(),
                }),
                true,
            ),
            (
                event(SystemEvent::AgentLeft {
                    agent_id: 1,
                    name: "A".into(),
                }),
                true,
            ),
            (event(SystemEvent::Resolved { by: Some(1) }), true),
            (event(SystemEvent::Reopened), true),
            (
                event(SystemEvent::AgentInvited {
                    agent_id: 2,
                    name: "B".into(),
                    by: 1,
                }),
                false,
            ),
            (
                event(SystemEvent::Assigned {
                    agent_id: 1,
                    name: "A".into(),
                }),
                false,
            ),
            (event(SystemEvent::Rated { score: 5 }), false),
            (event(SystemEvent::Missed), false),
            (event(SystemEvent::VisitorBlocked), false),
        ];
        for (body, visible) in cases {
            let m = message(agent(), body.clone(), 1);
            assert_eq!(m.visible_to_visitor(), visible, "{body:?}");
        }
    }

    #[test]
    fn previews_fold_whitespace_and_cut_at_140() {
        let m = message(Author::Visitor, text("  hello\n\n  there\tyou "), 1);
        assert_eq!(m.preview().as_deref(), Some("hello there you"));
        let long = "é".repeat(200);
        let preview = message(Author::Visitor, text(&long), 1).preview().unwrap();
        assert_eq!(preview.chars().count(), PREVIEW_CHARS);
        assert!(preview.ends_with('…'));
        let exact = "a".repeat(PREVIEW_CHARS);
        assert_eq!(
            message(Author::Visitor, text(&exact), 1).preview(),
            Some(exact)
        );
        let note = message(Author::System, MessageBody::Note { text: "x".into() }, 1);
        assert_eq!(note.preview(), None);
    }

    #[test]
    fn record_message_bookkeeping() {
        let mut c = conversation();
        let agent = Author::Agent {
            id: 7,
            name: "A".into(),
        };
        c.record_message(&message(Author::Visitor, text("hello"), 1));
        assert_eq!(
            (c.last_seq, c.last_visitor_seq, c.visitor_read_seq),
            (1, 1, 1)
        );
        assert_eq!(c.last_visitor_message_ms, Some(100));
        assert!(c.unread_for_agent(7));
        c.record_message(&message(
            agent.clone(),
            MessageBody::Note {
                text: "internal".into(),
            },
            2,
        ));
        assert_eq!(c.last_message_preview.as_deref(), Some("hello"));
        assert_eq!(c.last_message_ms, 100, "a note is not chat activity");
        assert_eq!(c.first_agent_reply_ms, None, "a note is not a reply");
        assert!(
            !c.unread_for_agent(7),
            "writing marks everything before read"
        );
        c.record_message(&message(
            Author::System,
            MessageBody::Event {
                event: SystemEvent::Reopened,
            },
            3,
        ));
        assert_eq!(c.last_message_preview.as_deref(), Some("hello"));
        c.record_message(&message(agent, text("answer"), 4));
        assert_eq!(c.first_agent_reply_ms, Some(400));
        assert_eq!(c.last_message_preview.as_deref(), Some("answer"));
        assert_eq!((c.last_seq, c.updated_ms, c.agent_read(7)), (4, 400, 4));
        assert_eq!(c.last_visitor_seq, 1);
        assert!(!c.set_agent_read(7, 2), "read marks never go back");
    }

    #[test]
    fn json_shapes_are_stable() {
        let m = Message {
            conversation_id: 3,
            seq: 2,
            author: Author::Agent {
                id: 1,
                name: "Ann".into(),
            },
            body: MessageBody::Event {
                event: SystemEvent::AgentJoined {
                    agent_id: 1,
                    name: "Ann".into(),
                },
            },
            created_ms: 9,
            client_id: None,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"conversation_id":3,"seq":2,"author":{"kind":"agent","id":1,"name":"Ann"},"body":{"type":"event","event":{"kind":"agent_joined","agent_id":1,"name":"Ann"}},"created_ms":9,"client_id":null}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), m);
        let c = conversation();
        let back: Conversation = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            serde_json::to_string(&ConversationOrigin::trigger(4)).unwrap(),
            r#"{"kind":"trigger","trigger_id":4}"#
        );
        let full = ConversationOrigin::Trigger {
            trigger_id: 4,
            variant: Some("b".into()),
            open_widget: true,
            test: true,
        };
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"trigger","trigger_id":4,"variant":"b","open_widget":true,"test":true}"#
        );
        assert_eq!(
            serde_json::from_str::<ConversationOrigin>(&json).unwrap(),
            full
        );
        // Records written before the variant existed still decode.
        assert_eq!(
            serde_json::from_str::<ConversationOrigin>(r#"{"kind":"trigger","trigger_id":4}"#)
                .unwrap(),
            ConversationOrigin::trigger(4)
        );
    }
}
