// drafts.ts - what the person is typing, per chat, kept in localStorage so a
// reload or an expired session does not lose it.

const PREFIX = 'coai.draft.';
export const NEW_CHAT_DRAFT = 'new';

export function loadDraft(key: string): string {
  try {
    return localStorage.getItem(PREFIX + key) ?? '';
  } catch {
    return '';
  }
}

export function saveDraft(key: string, text: string): void {
  try {
    if (text) localStorage.setItem(PREFIX + key, text);
    else localStorage.removeItem(PREFIX + key);
  } catch {
    /* quota or blocked storage: drafts are a convenience */
  }
}

export function clearDraft(key: string): void {
  saveDraft(key, '');
}
