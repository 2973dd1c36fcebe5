import type { MethodDefinition } from '../method.js';
import { agentInfo } from './agent-info.js';
import { agentRequestAccess } from './agent-request-access.js';
import { authChallenge } from './auth-challenge.js';
import { certificatesImport } from './certificates-import.js';
import { certificatesList } from './certificates-list.js';
import { certificatesStatus } from './certificates-status.js';
import { csrCreate } from './csr-create.js';
import { keysGenerate } from './keys-generate.js';
import { keysList } from './keys-list.js';
import { objectsDelete } from './objects-delete.js';
import { pinChange } from './pin-change.js';
import { pinUnblock } from './pin-unblock.js';
import { requestCancel } from './request-cancel.js';
import { signBatch } from './sign-batch.js';
import { signCms } from './sign-cms.js';
import { signRaw } from './sign-raw.js';
import { tokensInit } from './tokens-init.js';
import { tokensList } from './tokens-list.js';

/** The closed method list of PROTOCOL.md section 3 (the dispatcher knows nothing else). */
export const METHODS: readonly MethodDefinition[] = Object.freeze([
  agentInfo,
  agentRequestAccess,
  requestCancel,
  tokensList,
  certificatesList,
  certificatesStatus,
  signRaw,
  signCms,
  signBatch,
  authChallenge,
  tokensInit,
  pinChange,
  pinUnblock,
  keysGenerate,
  keysList,
  csrCreate,
  certificatesImport,
  objectsDelete,
]);
