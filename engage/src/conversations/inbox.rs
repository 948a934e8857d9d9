//! The agent's inbox: which tab a conversation belongs in, the filters, and the counts.
//!
//! The tabs partition a site's conversations from one agent's point of view:
//!
//! | tab | conversations |
//! |---|---|
//! | mine | open, assigned to the agent or with the agent among the participants |
//! | others | open, assigned to someone else, without the agent |
//! | unassigned | open, nobody assigned, not missed |
//! | missed | open, nobody assigned, the visitor left before any agent answered |
//! | resolved | resolved |
//!
//! A conversation without messages (its first message was never written) and one started by
//! a trigger that the visitor never answered are in no tab: neither is a chat anyone has to
//! work on.

use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::model::{Conversation, ConversationOrigin, ConversationState};

/// A tab of the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxTab {
    Mine,
    Others,
    Unassigned,
    Missed,
    Resolved,
}

impl InboxTab {
    pub const ALL: [InboxTab; 5] = [
        InboxTab::Mine,
        InboxTab::Others,
        InboxTab::Unassigned,
        InboxTab::Missed,
        InboxTab::Resolved,
    ];

    /// The tab's name as it appears in JSON and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxTab::Mine => "mine",
            InboxTab::Others => "others",
            InboxTab::Unassigned => "unassigned",
            InboxTab::Missed => "missed",
            InboxTab::Resolved => "resolved",
        }
    }

    /// The tab `conversation` belongs in for the agent `agent_id`, or `None` when it is in
    /// none (see the module documentation).
    pub fn of(conversation: &Conversation, agent_id: u64) -> Option<InboxTab> {
        if conversation.last_seq == 0 {
            return None;
        }
        let unanswered_trigger = matches!(conversation.origin, ConversationOrigin::Trigger { .. })
            && conversation.last_visitor_message_ms.is_none()
            && conversation.assigned_agent.is_none();
        if conversation.state == ConversationState::Resolved {
            return Some(InboxTab::Resolved);
        }
        if unanswered_trigger {
            return None;
        }
        Some(match conversation.assigned_agent {
            Some(id) if id == agent_id => InboxTab::Mine,
            _ if conversation.has_participant(agent_id) => InboxTab::Mine,
            Some(_) => InboxTab::Others,
            None if conversation.missed => InboxTab::Missed,
            None => InboxTab::Unassigned,
        })
    }
}

/// The error of parsing an [`InboxTab`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown inbox tab {0:?}: expected one of mine, others, unassigned, missed, resolved")]
pub struct ParseTabError(pub String);

impl FromStr for InboxTab {
    type Err = ParseTabError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        InboxTab::ALL
            .into_iter()
            .find(|tab| tab.as_str() == wanted)
            .ok_or_else(|| ParseTabError(s.to_string()))
    }
}

/// What the inbox shows. Every field is optional; an empty filter lists every conversation
/// that is in some tab.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxFilter {
    pub tab: Option<InboxTab>,
    /// Conversations this agent is assigned to or participates in.
    pub agent_id: Option<u64>,
    /// Conversations carrying this tag (compared as tags are stored: trimmed, lowercase).
    pub tag: Option<String>,
    /// Conversations rated with exactly this score.
    pub rating: Option<u8>,
    /// Conversations started on a page whose URL contains this text (any case).
    pub page_url: Option<String>,
    /// Conversations whose visitor had this address when they started.
    pub ip: Option<String>,
    /// Conversations created at or after this time.
    pub from_ms: Option<i64>,
    /// Conversations created before this time.
    pub to_ms: Option<i64>,
    /// Conversations whose subject, pre-chat details or messages (notes included) contain
    /// this text (any case).
    pub text: Option<String>,
    /// At most this many conversations (the newest).
    pub limit: Option<usize>,
}

impl InboxFilter {
    /// Whether `conversation` passes every criterion but `text`, which needs the messages
    /// and is checked by the service.
    pub fn matches(&self, conversation: &Conversation, agent_id: u64) -> bool {
        let Some(tab) = InboxTab::of(conversation, agent_id) else {
            return false;
        };
        if self.tab.is_some_and(|wanted| wanted != tab) {
            return false;
        }
        if let Some(id) = self.agent_id
            && conversation.assigned_agent != Some(id)
            && !conversation.has_participant(id)
        {
            return false;
        }
        if let Some(tag) = &self.tag {
            let tag = tag.trim().to_lowercase();
            if !conversation.tags.contains(&tag) {
                return false;
            }
        }
        if let Some(score) = self.rating
            && conversation.rating.as_ref().map(|r| r.score) != Some(score)
        {
            return false;
        }
        if let Some(part) = &self.page_url {
            let part = part.trim().to_lowercase();
            let url = conversation
                .page_url
                .as_deref()
                .unwrap_or("")
                .to_lowercase();
            if !url.contains(&part) {
                return false;
            }
        }
        if let Some(ip) = &self.ip
            && !conversation
                .visitor_ip
                .as_deref()
                .is_some_and(|stored| same_address(stored, ip))
        {
            return false;
        }
        if self
            .from_ms
            .is_some_and(|from| conversation.created_ms < from)
        {
            return false;
        }
        if self.to_ms.is_some_and(|to| conversation.created_ms >= to) {
            return false;
        }
        true
    }
}

/// Compares addresses as addresses (`::ffff:1.2.3.4` is `1.2.3.4`, `::1` is
/// `0:0:0:0:0:0:0:1`), falling back to text when either does not parse.
fn same_address(a: &str, b: &str) -> bool {
    match (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a.to_canonical() == b.to_canonical(),
        _ => a.trim().eq_ignore_ascii_case(b.trim()),
    }
}

/// The numbers on one tab.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabCount {
    /// Conversations in the tab.
    pub total: usize,
    /// Of those, conversations with a visitor message the agent has not read.
    pub unread: usize,
}

/// The numbers on every tab, for one agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxCounts {
    pub mine: TabCount,
    pub others: TabCount,
    pub unassigned: TabCount,
    pub missed: TabCount,
    pub resolved: TabCount,
}

impl InboxCounts {
    pub fn get(&self, tab: InboxTab) -> TabCount {
        match tab {
            InboxTab::Mine => self.mine,
            InboxTab::Others => self.others,
            InboxTab::Unassigned => self.unassigned,
            InboxTab::Missed => self.missed,
            InboxTab::Resolved => self.resolved,
        }
    }

    fn get_mut(&mut self, tab: InboxTab) -> &mut TabCount {
        match tab {
            InboxTab::Mine => &mut self.mine,
            InboxTab::Others => &mut self.others,
            InboxTab::Unassigned => &mut self.unassigned,
            InboxTab::Missed => &mut self.missed,
            InboxTab::Resolved => &mut self.resolved,
        }
    }

    /// Counts one conversation for `agent_id`.
    pub fn add(&mut self, conversation: &Conversation, agent_id: u64) {
        if let Some(tab) = InboxTab::of(conversation, agent_id) {
            let count = self.get_mut(tab);
            count.total += 1;
            if conversation.unread_for_agent(agent_id) {
                count.unread += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::model::{NewConversation, Rating};

    fn conversation(id: u64) -> Conversation {
        let mut c = NewConversation {
            site: "demo".into(),
            visitor_id: format!("v{id}"),
            origin: ConversationOrigin::Visitor,
            assigned_agent: None,
            participants: Vec::new(),
            created_ms: 1_000 * id as i64,
            subject: None,
            page_url: Some("https://shop.example/Pricing?x=1".into()),
            visitor_ip: Some("203.0.113.9".into()),
            prechat: None,
        }
        .with_id(id);
        c.last_seq = 1;
        c.last_visitor_seq = 1;
        c.last_visitor_message_ms = Some(c.created_ms);
        c
    }

    #[test]
    fn tab_table() {
        const ME: u64 = 1;
        let base = conversation(1);
        let with = |f: &dyn Fn(&mut Conversation)| {
            let mut c = base.clone();
            f(&mut c);
            c
        };
        let cases: Vec<(&str, Conversation, Option<InboxTab>)> = vec![
            ("new", base.clone(), Some(InboxTab::Unassigned)),
            (
                "mine",
                with(&|c| c.assigned_agent = Some(ME)),
                Some(InboxTab::Mine),
            ),
            (
                "joined someone else's",
                with(&|c| {
                    c.assigned_agent = Some(2);
                    c.participants = vec![2, ME];
                }),
                Some(InboxTab::Mine),
            ),
            (
                "others",
                with(&|c| c.assigned_agent = Some(2)),
                Some(InboxTab::Others),
            ),
            ("missed", with(&|c| c.missed = true), Some(InboxTab::Missed)),
            (
                "missed then taken",
                with(&|c| {
                    c.missed = true;
                    c.assigned_agent = Some(ME);
                }),
                Some(InboxTab::Mine),
            ),
            (
                "resolved",
                with(&|c| {
                    c.state = ConversationState::Resolved;
                    c.assigned_agent = Some(ME);
                }),
                Some(InboxTab::Resolved),
            ),
            ("no messages", with(&|c| c.last_seq = 0), None),
            (
                "unanswered trigger",
                with(&|c| {
                    c.origin = ConversationOrigin::trigger(3);
                    c.last_visitor_message_ms = None;
                }),
                None,
            ),
            (
                "answered trigger",
                with(&|c| c.origin = ConversationOrigin::trigger(3)),
                Some(InboxTab::Unassigned),
            ),
        ];
        for (name, c, expected) in cases {
            assert_eq!(InboxTab::of(&c, ME), expected, "{name}");
        }
    }

    #[test]
    fn filter_table() {
        let mut c = conversation(5);
        c.tags = vec!["vip".into(), "billing".into()];
        c.assigned_agent = Some(3);
        c.rating = Some(Rating {
            score: 4,
            comment: None,
            at_ms: 0,
        });
        let f = |f: InboxFilter| f.matches(&c, 1);
        assert!(f(InboxFilter::default()));
        assert!(f(InboxFilter {
            tab: Some(InboxTab::Others),
            ..Default::default()
        }));
        assert!(!f(InboxFilter {
            tab: Some(InboxTab::Mine),
            ..Default::default()
        }));
        assert!(f(InboxFilter {
            agent_id: Some(3),
            ..Default::default()
        }));
        assert!(!f(InboxFilter {
            agent_id: Some(4),
            ..Default::default()
        }));
        assert!(f(InboxFilter {
            tag: Some(" VIP ".into()),
            ..Default::default()
        }));
        assert!(!f(InboxFilter {
            tag: Some("sales".into()),
            ..Default::default()
        }));
        assert!(f(InboxFilter {
            rating: Some(4),
            ..Default::default()
        }));
        assert!(!f(InboxFilter {
            rating: Some(5),
            ..Default::default()
        }));
        assert!(f(InboxFilter {
            page_url: Some("pricing".into()),
            ..Default::default()
        }));
        assert!(!f(InboxFilter {
            page_url: Some("/checkout".into()),
            ..Default::default()
        }));
        assert!(f(InboxFilter {
            ip: Some("::ffff:203.0.113.9".into()),
            ..Default::default()
        }));
        assert!(!f(InboxFilter {
            ip: Some("203.0.113.10".into()),
            ..Default::default()
        }));
        assert!(f(InboxFilter {
            from_ms: Some(5_000),
            to_ms: Some(5_001),
            ..Default::default()
        }));
        assert!(!f(InboxFilter {
            from_ms: Some(5_001),
            ..Default::default()
        }));
        assert!(!f(InboxFilter {
            to_ms: Some(5_000),
            ..Default::default()
        }));
    }

    #[test]
    fn tabs_parse() {
        for tab in InboxTab::ALL {
            assert_eq!(tab.as_str().parse::<InboxTab>(), Ok(tab));
        }
        assert_eq!(" Missed ".parse::<InboxTab>(), Ok(InboxTab::Missed));
        assert!("everything".parse::<InboxTab>().is_err());
    }
}
