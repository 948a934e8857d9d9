// Browser notifications (while the console tab is hidden) and a short
// WebAudio beep (whenever the agent is not looking at the conversation) for
// new chats, messages and invitations; see InboxService.maybeNotify. Notification permission is only
// requested from a user gesture (the inbox's "Enable notifications" button).
// Notification titles and bodies are plain text, never markup.

const SOUND_KEY = 'porchlight.console.sound';

let audio = null;

function audioContext() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  if (!audio) {
    try {
      audio = new Ctx();
    } catch {
      return null;
    }
  }
  if (audio.state === 'suspended') audio.resume().catch(() => {});
  return audio;
}

// Autoplay rules: an AudioContext can only start after a user gesture, so
// the first click or key press anywhere unlocks the beep.
function unlock() {
  audioContext();
  document.removeEventListener('pointerdown', unlock, true);
  document.removeEventListener('keydown', unlock, true);
}
document.addEventListener('pointerdown', unlock, true);
document.addEventListener('keydown', unlock, true);

export function notificationState() {
  if (typeof Notification === 'undefined') return 'unsupported';
  return Notification.permission; // 'default' | 'granted' | 'denied'
}

// Call from a click handler.
export async function enableNotifications() {
  audioContext();
  if (typeof Notification === 'undefined') return 'unsupported';
  try {
    return await Notification.requestPermission();
  } catch {
    return Notification.permission;
  }
}

export function soundEnabled() {
  try {
    return localStorage.getItem(SOUND_KEY) !== 'off';
  } catch {
    return true;
  }
}

export function setSoundEnabled(on) {
  try {
    localStorage.setItem(SOUND_KEY, on ? 'on' : 'off');
  } catch {
    /* storage disabled */
  }
  if (on) audioContext();
}

export function beep() {
  if (!soundEnabled()) return;
  const ctx = audioContext();
  if (!ctx || ctx.state !== 'running') return;
  try {
    const t = ctx.currentTime;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = 'sine';
    osc.frequency.setValueAtTime(880, t);
    osc.frequency.setValueAtTime(1175, t + 0.09);
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.18, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.28);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t);
    osc.stop(t + 0.3);
  } catch {
    /* no sound then */
  }
}

// Shows a notification (if permitted); clicking it focuses the console and
// runs onClick. `tag` collapses repeated notifications of one conversation.
export function notify(title, body, { tag, onClick } = {}) {
  if (notificationState() !== 'granted') return null;
  try {
    const n = new Notification(String(title).slice(0, 120), {
      body: String(body || '').slice(0, 240),
      tag: tag || undefined,
      renotify: !!tag,
      silent: true, // we play our own beep
    });
    n.onclick = () => {
      try {
        window.focus();
      } catch {
        /* ignore */
      }
      if (onClick) onClick();
      n.close();
    };
    return n;
  } catch {
    return null; // e.g. platforms that only allow notifications from a service worker
  }
}
