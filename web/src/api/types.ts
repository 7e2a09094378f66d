// Wire types: the JSON the server sends and accepts (see server/src/views.c,
// docs/openapi.yaml). UI state lives in src/state/, never here.

export type Id = string;
/** Milliseconds since the Unix epoch, as the server sends them. */
export type Millis = number;

export interface User {
  id: Id;
  email: string;
  name: string | null;
  is_admin: boolean;
  created_at: Millis;
  updated_at: Millis;
}

export interface Session {
  id: Id;
  user_agent: string | null;
  ip: string | null;
  created_at: Millis;
  last_seen_at: Millis;
  expires_at: Millis;
  current: boolean;
}

export interface Connection {
  id: Id | null;
  base_url: string;
  has_key: boolean;
  key_last4: string | null;
  /** "server": no personal connection; the server's default is used. */
  source: 'user' | 'server';
  created_at?: Millis;
  updated_at?: Millis;
}

export interface Model {
  id: string;
}

export interface ModelList {
  data: Model[];
  default: string;
  source: 'provider' | 'cache' | 'fallback';
}

export interface ChatParams {
  temperature?: number | null;
  top_p?: number | null;
  max_tokens?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  seed?: number | null;
}

export interface Chat {
  id: Id;
  title: string | null;
  model: string | null;
  system_prompt: string | null;
  params: ChatParams;
  folder_id: Id | null;
  workspace_id: Id | null;
  current_leaf_id: Id | null;
  created_at: Millis;
  updated_at: Millis;
}

export interface ChatPage {
  data: Chat[];
  next_cursor: string | null;
}

export interface TextPart {
  type: 'text';
  text: string;
}
export interface RefusalPart {
  type: 'refusal';
  text: string;
}
export interface ToolCallPart {
  type: 'tool_call';
  id: string;
  name: string;
  arguments: string;
}
export type ContentPart = TextPart | RefusalPart | ToolCallPart;

export type MessageStatus = 'complete' | 'streaming' | 'error' | 'stopped' | 'interrupted';
export type Role = 'user' | 'assistant' | 'system';

export interface WireError {
  code: string;
  message: string;
  [k: string]: unknown;
}

export interface Usage {
  prompt_tokens: number | null;
  completion_tokens: number | null;
}

export interface Message {
  id: Id;
  chat_id: Id;
  parent_id: Id | null;
  role: Role;
  content: ContentPart[];
  model: string | null;
  status: MessageStatus;
  error: WireError | null;
  usage: Usage | null;
  created_at: Millis;
  updated_at: Millis;
}

export interface ChatWithMessages {
  chat: Chat;
  messages: Message[];
  /** Only with ?tail=N: true when messages were left out. */
  partial?: boolean;
  /** Only with ?tail=N: the number of messages of the whole chat. */
  message_count?: number;
}

export interface TurnStarted {
  user_message: Message | null;
  assistant_message: Message;
  turn: { id: Id; events_url: string };
}

export interface ChatPatch {
  title?: string | null;
  model?: string | null;
  system_prompt?: string | null;
  params?: ChatParams | null;
  current_leaf_id?: Id;
}

// ---- turn events (GET /api/v1/turns/{id}/events) ----------------------------

export interface ToolCallDelta {
  index: number;
  id?: string;
  name?: string;
  arguments?: string;
}

export interface DeltaEvent {
  content?: string;
  refusal?: string;
  tool_calls?: ToolCallDelta[];
}
export interface UsageEvent {
  prompt_tokens: number;
  completion_tokens: number;
}
export interface RetryEvent {
  attempt: number;
  delay_ms: number;
  [k: string]: unknown;
}
export interface SnapshotEvent {
  message: Message;
}
export interface DoneEvent {
  status: MessageStatus;
  message: Message;
}

export type TurnEvent =
  | { type: 'delta'; id: number | null; data: DeltaEvent }
  | { type: 'usage'; id: number | null; data: UsageEvent }
  | { type: 'retry'; id: number | null; data: RetryEvent }
  | { type: 'error'; id: number | null; data: WireError }
  | { type: 'snapshot'; id: number | null; data: SnapshotEvent }
  | { type: 'done'; id: number | null; data: DoneEvent };

export interface ErrorBody {
  error: { code: string; message: string };
}
