//! A [`Store`] for tests that must make a write wait or fail: the moments a real disk makes
//! too short to observe, or never produces on demand. Every other operation goes straight to
//! the [`RedbStore`] inside.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::attachments::AttachmentMeta;
use crate::conversations::{
    Block, Conversation, ConversationWrite, Message, NewConversation, WriteOutcome,
};
use crate::error::StoreError;
use crate::model::{
    Agent, ApiTokenRecord, NewAgentRecord, NewApiTokenRecord, Profile, ProfileRecord,
    SessionRecord, Site,
};
use crate::redb_store::RedbStore;
use crate::store::Store;
use crate::triggers::{FireRecord, StatsDelta, StatsRow, Trigger};

/// A [`RedbStore`] wrapper with these knobs:
///
/// - `save_profiles` first waits for a permit of [`GatedStore::gate`] (which starts with none:
///   a test adds permits to let writes through), then fails with `StoreError::Io("disk full")`
///   while [`GatedStore::fail`] is set.
/// - `save_trigger_activity` lets [`GatedStore::fail_trigger_activity_after`] more calls through
///   and fails every later one with `StoreError::Io("disk full")`, writing nothing. While
///   [`GatedStore::gate_trigger_activity`] is set, each call first waits for a permit of
///   [`GatedStore::gate`] too, so a test can act while a write is in flight.
#[derive(Debug)]
pub(crate) struct GatedStore {
    pub(crate) inner: Arc<RedbStore>,
    /// Permits for `save_profiles` (and, while `gate_trigger_activity` is set, for
    /// `save_trigger_activity`), one per call.
    pub(crate) gate: Semaphore,
    /// While true, `save_profiles` fails (after taking its permit).
    pub(crate) fail: AtomicBool,
    /// How many more `save_trigger_activity` calls are passed to the inner store; each one
    /// passed takes one off, and at 0 every call fails. `usize::MAX` (the default) means never
    /// fail, and is not counted down. Setting it again resets the countdown.
    pub(crate) fail_trigger_activity_after: AtomicUsize,
    /// While true, `save_trigger_activity` waits for a permit of `gate` before anything else.
    pub(crate) gate_trigger_activity: AtomicBool,
}

impl GatedStore {
    /// No permits for `save_profiles`, an ungated `save_trigger_activity`, and no failures.
    pub(crate) fn new(inner: Arc<RedbStore>) -> Self {
        Self {
            inner,
            gate: Semaphore::new(0),
            fail: AtomicBool::new(false),
            fail_trigger_activity_after: AtomicUsize::new(usize::MAX),
            gate_trigger_activity: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn load_profile(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Option<Profile>, StoreError> {
        self.inner.load_profile(site, visitor_id).await
    }
    async fn save_profiles(&self, batch: &[ProfileRecord]) -> Result<(), StoreError> {
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| StoreError::Db(e.to_string()))?;
        permit.forget();
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Io("disk full".into()));
        }
        self.inner.save_profiles(batch).await
    }
    async fn max_visitor_numbers(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.inner.max_visitor_numbers().await
    }
    async fn create_agent(&self, agent: NewAgentRecord) -> Result<Agent, StoreError> {
        self.inner.create_agent(agent).await
    }
    async fn agent(&self, id: u64) -> Result<Option<Agent>, StoreError> {
        self.inner.agent(id).await
    }
    async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>, StoreError> {
        self.inner.agent_by_email(email).await
    }
    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.inner.list_agents().await
    }
    async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        self.inner.update_agent(agent).await
    }
    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.inner.put_session(session).await
    }
    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.session(token_hash).await
    }
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.inner.delete_session(token_hash).await
    }
    async fn purge_expired_sessions(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.inner.purge_expired_sessions(now_ms).await
    }
    async fn create_api_token(
        &self,
        token: NewApiTokenRecord,
    ) -> Result<ApiTokenRecord, StoreError> {
        self.inner.create_api_token(token).await
    }
    async fn api_token(&self, token_hash: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        self.inner.api_token(token_hash).await
    }
    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.inner.list_api_tokens().await
    }
    async fn delete_api_token(&self, id: u64) -> Result<bool, StoreError> {
        self.inner.delete_api_token(id).await
    }
    async fn create_site(&self, site: &Site) -> Result<(), StoreError> {
        self.inner.create_site(site).await
    }
    async fn site(&self, key: &str) -> Result<Option<Site>, StoreError> {
        self.inner.site(key).await
    }
    async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
        self.inner.list_sites().await
    }
    async fn update_site(&self, site: &Site) -> Result<(), StoreError> {
        self.inner.update_site(site).await
    }
    async fn create_conversation(
        &self,
        conversation: NewConversation,
    ) -> Result<Conversation, StoreError> {
        self.inner.create_conversation(conversation).await
    }
    async fn conversation(&self, id: u64) -> Result<Option<Conversation>, StoreError> {
        self.inner.conversation(id).await
    }
    async fn update_conversation(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.inner.update_conversation(conversation).await
    }
    async fn write_conversation(
        &self,
        write: ConversationWrite,
    ) -> Result<WriteOutcome, StoreError> {
        self.inner.write_conversation(write).await
    }
    async fn messages(
        &self,
        conversation_id: u64,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.inner.messages(conversation_id, after_seq, limit).await
    }
    async fn conversations_of_visitor(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<Conversation>, StoreError> {
        self.inner.conversations_of_visitor(site, visitor_id).await
    }
    async fn conversations_of_site(&self, site: &str) -> Result<Vec<Conversation>, StoreError> {
        self.inner.conversations_of_site(site).await
    }
    async fn put_attachment(
        &self,
        conversation_id: u64,
        attachment: &AttachmentMeta,
    ) -> Result<(), StoreError> {
        self.inner.put_attachment(conversation_id, attachment).await
    }
    async fn attachment(
        &self,
        conversation_id: u64,
        id: &str,
    ) -> Result<Option<AttachmentMeta>, StoreError> {
        self.inner.attachment(conversation_id, id).await
    }
    async fn put_visitor_credential(
        &self,
        site: &str,
        visitor_id: &str,
        token_hash: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .put_visitor_credential(site, visitor_id, token_hash)
            .await
    }
    async fn visitor_credential(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.visitor_credential(site, visitor_id).await
    }
    async fn put_block(&self, site: &str, block: &Block) -> Result<(), StoreError> {
        self.inner.put_block(site, block).await
    }
    async fn remove_block(&self, site: &str, visitor_id: &str) -> Result<bool, StoreError> {
        self.inner.remove_block(site, visitor_id).await
    }
    async fn blocks(&self, site: &str) -> Result<Vec<Block>, StoreError> {
        self.inner.blocks(site).await
    }
    async fn create_webhook(
        &self,
        webhook: crate::webhooks::NewWebhook,
    ) -> Result<crate::webhooks::Webhook, StoreError> {
        self.inner.create_webhook(webhook).await
    }
    async fn webhooks(&self, site: &str) -> Result<Vec<crate::webhooks::Webhook>, StoreError> {
        self.inner.webhooks(site).await
    }
    async fn delete_webhook(&self, site: &str, id: u64) -> Result<bool, StoreError> {
        self.inner.delete_webhook(site, id).await
    }
    async fn record_delivery(
        &self,
        site: &str,
        delivery: &crate::webhooks::Delivery,
    ) -> Result<(), StoreError> {
        self.inner.record_delivery(site, delivery).await
    }
    async fn deliveries(&self, site: &str) -> Result<Vec<crate::webhooks::Delivery>, StoreError> {
        self.inner.deliveries(site).await
    }
    async fn widget_settings(
        &self,
        site: &str,
    ) -> Result<Option<crate::widget::WidgetSettings>, StoreError> {
        self.inner.widget_settings(site).await
    }
    async fn put_widget_settings(
        &self,
        site: &str,
        settings: &crate::widget::WidgetSettings,
    ) -> Result<(), StoreError> {
        self.inner.put_widget_settings(site, settings).await
    }
    async fn create_lead(
        &self,
        lead: crate::widget::NewLead,
    ) -> Result<crate::widget::Lead, StoreError> {
        self.inner.create_lead(lead).await
    }
    async fn leads(&self, site: &str) -> Result<Vec<crate::widget::Lead>, StoreError> {
        self.inner.leads(site).await
    }
    async fn saved_replies(
        &self,
        site: &str,
    ) -> Result<Vec<crate::saved_replies::SavedReply>, StoreError> {
        self.inner.saved_replies(site).await
    }
    async fn saved_reply(
        &self,
        site: &str,
        id: u64,
    ) -> Result<Option<crate::saved_replies::SavedReply>, StoreError> {
        self.inner.saved_reply(site, id).await
    }
    async fn create_saved_reply(
        &self,
        reply: crate::saved_replies::NewSavedReply,
    ) -> Result<crate::saved_replies::SavedReply, StoreError> {
        self.inner.create_saved_reply(reply).await
    }
    async fn update_saved_reply(
        &self,
        reply: &crate::saved_replies::SavedReply,
    ) -> Result<(), StoreError> {
        self.inner.update_saved_reply(reply).await
    }
    async fn delete_saved_reply(&self, site: &str, id: u64) -> Result<bool, StoreError> {
        self.inner.delete_saved_reply(site, id).await
    }
    async fn visitor_notes(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<crate::contacts::VisitorNote>, StoreError> {
        self.inner.visitor_notes(site, visitor_id).await
    }
    async fn create_visitor_note(
        &self,
        note: crate::contacts::NewVisitorNote,
    ) -> Result<crate::contacts::VisitorNote, StoreError> {
        self.inner.create_visitor_note(note).await
    }
    async fn delete_visitor_note(
        &self,
        site: &str,
        visitor_id: &str,
        id: u64,
    ) -> Result<bool, StoreError> {
        self.inner.delete_visitor_note(site, visitor_id, id).await
    }
    async fn contact_tags(&self, site: &str, visitor_id: &str) -> Result<Vec<String>, StoreError> {
        self.inner.contact_tags(site, visitor_id).await
    }
    async fn put_contact_tags(
        &self,
        site: &str,
        visitor_id: &str,
        tags: &[String],
    ) -> Result<(), StoreError> {
        self.inner.put_contact_tags(site, visitor_id, tags).await
    }
    async fn put_agent_status(
        &self,
        agent_id: u64,
        status: crate::model::AgentStatus,
    ) -> Result<(), StoreError> {
        self.inner.put_agent_status(agent_id, status).await
    }
    async fn agent_statuses(&self) -> Result<Vec<(u64, crate::model::AgentStatus)>, StoreError> {
        self.inner.agent_statuses().await
    }
    async fn create_trigger(&self, trigger: Trigger) -> Result<Trigger, StoreError> {
        self.inner.create_trigger(trigger).await
    }
    async fn create_triggers(&self, triggers: Vec<Trigger>) -> Result<Vec<Trigger>, StoreError> {
        self.inner.create_triggers(triggers).await
    }
    async fn trigger(&self, site: &str, id: u64) -> Result<Option<Trigger>, StoreError> {
        self.inner.trigger(site, id).await
    }
    async fn triggers(&self, site: &str) -> Result<Vec<Trigger>, StoreError> {
        self.inner.triggers(site).await
    }
    async fn all_triggers(&self) -> Result<Vec<Trigger>, StoreError> {
        self.inner.all_triggers().await
    }
    async fn update_trigger(&self, trigger: &Trigger) -> Result<(), StoreError> {
        self.inner.update_trigger(trigger).await
    }
    async fn delete_trigger(&self, site: &str, id: u64) -> Result<bool, StoreError> {
        self.inner.delete_trigger(site, id).await
    }
    async fn trigger_fires(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<FireRecord>, StoreError> {
        self.inner.trigger_fires(site, visitor_id).await
    }
    async fn trigger_fired_visitors(&self, site: &str) -> Result<Vec<String>, StoreError> {
        self.inner.trigger_fired_visitors(site).await
    }
    async fn save_trigger_activity(
        &self,
        fires: &[FireRecord],
        deltas: &[StatsDelta],
    ) -> Result<(), StoreError> {
        if self.gate_trigger_activity.load(Ordering::SeqCst) {
            let permit = self
                .gate
                .acquire()
                .await
                .map_err(|e| StoreError::Db(e.to_string()))?;
            permit.forget();
        }
        let let_through = self.fail_trigger_activity_after.fetch_update(
            Ordering::SeqCst,
            Ordering::SeqCst,
            |left| match left {
                0 => None,
                usize::MAX => Some(usize::MAX),
                left => Some(left - 1),
            },
        );
        if let_through.is_err() {
            return Err(StoreError::Io("disk full".into()));
        }
        self.inner.save_trigger_activity(fires, deltas).await
    }
    async fn trigger_stats(
        &self,
        site: &str,
        trigger_id: u64,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<StatsRow>, StoreError> {
        self.inner
            .trigger_stats(site, trigger_id, from_day, to_day)
            .await
    }
}
