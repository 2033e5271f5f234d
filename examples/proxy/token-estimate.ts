// Deterministic token estimates (about 4 characters a token): the fallback when an upstream reports no usage,
// and the mock upstream's own prompt count.

/** Tokens of a piece of text of this many characters: ceil(characters / 4). */
export function estimateTokensFromChars(characters: number): number {
  return Math.ceil(characters / 4);
}

/** The text of an OpenAI / Anthropic content value: a string or an array of blocks with `text`. */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const block of content) {
    if (block && typeof block === 'object' && typeof (block as { text?: unknown }).text === 'string') {
      text += (block as { text: string }).text;
    }
  }
  return text;
}

/** Prompt tokens of a chat request body (system prompt and every message), at least 1. */
export function estimatePromptTokens(body: unknown): number {
  if (!body || typeof body !== 'object') return 1;
  const { system, messages } = body as { system?: unknown; messages?: unknown };
  let characters = contentText(system).length;
  if (Array.isArray(messages)) {
    for (const message of messages) {
      if (message && typeof message === 'object') characters += contentText((message as { content?: unknown }).content).length;
    }
  }
  return Math.max(1, estimateTokensFromChars(characters));
}
