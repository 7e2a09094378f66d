// connection.ts - the provider connection (has a key? which models?).

import { signal } from '@preact/signals';
import { api } from '../api/client';
import type { Connection, ModelList } from '../api/types';

export const connection = signal<Connection | null>(null);
export const models = signal<ModelList | null>(null);
export const modelsError = signal<string | null>(null);

export async function loadConnection(): Promise<void> {
  try {
    connection.value = (await api.connection()).connection;
  } catch {
    /* shown as unknown; sending will explain */
  }
}

export async function loadModels(): Promise<void> {
  try {
    models.value = await api.models();
    modelsError.value = null;
  } catch (e) {
    modelsError.value = (e as Error).message;
  }
}

export async function saveConnection(baseUrl: string, apiKey?: string): Promise<void> {
  connection.value = (await api.saveConnection(baseUrl, apiKey)).connection;
  void loadModels();
}

export async function removeConnection(): Promise<void> {
  await api.deleteConnection();
  await loadConnection();
  void loadModels();
}

/** Why the composer cannot send, or null when it can. */
export function noKeyReason(c: Connection | null): string | null {
  if (c && !c.has_key) return 'Add your provider API key in Settings to start chatting.';
  return null;
}
