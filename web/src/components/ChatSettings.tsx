// ChatSettings.tsx - per-chat model, system prompt, temperature and max tokens.

import { useState } from 'preact/hooks';
import type { ChatParams } from '../api/types';
import { models } from '../state/connection';
import { ApiError } from '../api/client';
import { Dialog } from './Dialog';

export interface SettingsValue {
  model: string | null;
  system_prompt: string | null;
  params: ChatParams;
}

interface Props {
  open: boolean;
  value: SettingsValue;
  onClose(): void;
  onSave(v: SettingsValue): Promise<void>;
}

export function ModelSelect({ id, value, onChange, label = 'Model' }: { id: string; value: string | null; onChange(v: string | null): void; label?: string }) {
  const list = models.value;
  const ids = list?.data.map((m) => m.id) ?? [];
  const def = list?.default ?? null;
  if (value && !ids.includes(value)) ids.unshift(value);
  return (
    <>
      <label for={id} class="sr-only">
        {label}
      </label>
      <select id={id} class="model-select" value={value ?? ''} onChange={(e) => onChange((e.target as HTMLSelectElement).value || null)} data-testid="model-select">
        <option value="">{def ? `Default (${def})` : 'Default model'}</option>
        {ids.map((m) => (
          <option value={m} key={m}>
            {m}
          </option>
        ))}
      </select>
    </>
  );
}

export function ChatSettingsDialog({ open, value, onClose, onSave }: Props) {
  return (
    <Dialog open={open} title="Chat settings" onClose={onClose} testId="chat-settings" wide>
      {open && <SettingsForm value={value} onClose={onClose} onSave={onSave} />}
    </Dialog>
  );
}

function SettingsForm({ value, onClose, onSave }: Omit<Props, 'open'>) {
  const [model, setModel] = useState(value.model);
  const [prompt, setPrompt] = useState(value.system_prompt ?? '');
  const [temp, setTemp] = useState(value.params.temperature == null ? '' : String(value.params.temperature));
  const [maxTokens, setMaxTokens] = useState(value.params.max_tokens == null ? '' : String(value.params.max_tokens));
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const t = temp.trim() === '' ? null : Number(temp);
    const mt = maxTokens.trim() === '' ? null : Number(maxTokens);
    if (t !== null && (!Number.isFinite(t) || t < 0 || t > 2)) return setError('Temperature must be a number from 0 to 2.');
    if (mt !== null && (!Number.isInteger(mt) || mt < 1 || mt > 1_000_000)) return setError('Max tokens must be a whole number from 1 to 1,000,000.');
    setBusy(true);
    setError(null);
    try {
      const params: ChatParams = { ...value.params, temperature: t, max_tokens: mt };
      for (const k of Object.keys(params) as (keyof ChatParams)[]) if (params[k] == null) delete params[k];
      await onSave({ model, system_prompt: prompt.trim() ? prompt : null, params });
      onClose();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : 'Could not save the settings.');
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="dialog-body form" onSubmit={submit}>
      <div class="field">
        <label for="cs-model">Model</label>
        <ModelSelectInner value={model} onChange={setModel} />
      </div>
      <div class="field">
        <label for="cs-prompt">System prompt</label>
        <textarea id="cs-prompt" rows={5} value={prompt} placeholder="You are a helpful assistant." onInput={(e) => setPrompt((e.target as HTMLTextAreaElement).value)} />
      </div>
      <div class="field-row">
        <div class="field">
          <label for="cs-temp">Temperature</label>
          <input id="cs-temp" type="number" inputMode="decimal" min="0" max="2" step="0.1" placeholder="default" value={temp} onInput={(e) => setTemp((e.target as HTMLInputElement).value)} />
          <span class="hint">0 – 2; higher is more varied</span>
        </div>
        <div class="field">
          <label for="cs-max">Max tokens</label>
          <input id="cs-max" type="number" inputMode="numeric" min="1" step="1" placeholder="default" value={maxTokens} onInput={(e) => setMaxTokens((e.target as HTMLInputElement).value)} />
          <span class="hint">Longest answer, in tokens</span>
        </div>
      </div>
      {error && (
        <p class="form-error" role="alert">
          {error}
        </p>
      )}
      <div class="dialog-actions">
        <button type="button" class="btn" onClick={onClose}>
          Cancel
        </button>
        <button type="submit" class="btn primary" disabled={busy}>
          Save
        </button>
      </div>
    </form>
  );
}

function ModelSelectInner({ value, onChange }: { value: string | null; onChange(v: string | null): void }) {
  const list = models.value;
  const ids = list?.data.map((m) => m.id) ?? [];
  if (value && !ids.includes(value)) ids.unshift(value);
  return (
    <select id="cs-model" value={value ?? ''} onChange={(e) => onChange((e.target as HTMLSelectElement).value || null)}>
      <option value="">{list?.default ? `Default (${list.default})` : 'Default model'}</option>
      {ids.map((m) => (
        <option value={m} key={m}>
          {m}
        </option>
      ))}
    </select>
  );
}
