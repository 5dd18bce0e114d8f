/** AdminService token RPCs (admin only, by POLICY): create, list and revoke API tokens. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type ApiToken,
  ApiTokenSchema,
  type CreateTokenRequest,
  type RevokeTokenRequest,
} from "../../gen/crms/v1/admin_pb.js";
import type { Logger } from "../services/context.js";
import type { TokenRecord, TokenStore } from "./tokens.js";

function toApi(r: TokenRecord): ApiToken {
  return create(ApiTokenSchema, {
    id: r.id,
    name: r.name,
    role: r.role,
    worker: r.worker ?? "",
    createTime: timestampFromDate(new Date(r.createdAt)),
  });
}

export function createTokenService(tokens: TokenStore, log: Logger) {
  return {
    async createToken(req: CreateTokenRequest) {
      const { secret, record } = await tokens.create({
        name: req.name,
        role: req.role,
        ...(req.worker ? { worker: req.worker } : {}),
      });
      log.info("token created", { token: record.id, name: record.name, role: record.role });
      return { token: toApi(record), secret };
    },

    async listTokens() {
      return { tokens: (await tokens.list()).map(toApi) };
    },

    async revokeToken(req: RevokeTokenRequest) {
      const record = await tokens.revoke(req.id);
      log.info("token revoked", { token: record.id, name: record.name });
      return { token: toApi(record) };
    },
  };
}
